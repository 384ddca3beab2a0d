// Command checkstatic fails unless the ELF file it is given is statically
// linked: no program interpreter, no shared libraries, so it runs on a
// distroless or scratch image.
package main

import (
	"debug/elf"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: checkstatic BINARY")
		os.Exit(2)
	}
	f, err := elf.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkstatic:", err)
		os.Exit(1)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			fmt.Fprintln(os.Stderr, "checkstatic: dynamically linked (has a program interpreter)")
			os.Exit(1)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		fmt.Fprintln(os.Stderr, "checkstatic: needs shared libraries:", libs)
		os.Exit(1)
	}
	fmt.Println("static:", os.Args[1])
}
