package app

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// releaseStartupPages asks the kernel to reclaim the pages of this
// program's code and read-only data, and returns the size of the mappings
// it asked for.
//
// Go runs the init of every linked package at start-up, and the kernel maps
// each page touched with up to 64 KiB of its neighbours (fault-around), so
// about 16 MiB of a 27 MB binary stays resident in every pod although
// serving calls needs about 6. These are clean pages of the executable:
// reclaiming them is what the kernel does under memory pressure anyway,
// and a page needed again is read back on its next use. MADV_PAGEOUT never
// changes what a mapping reads, leaves pages that another process maps too
// (other sidecars of the same image on the node) where they are, and is
// only asked of read-only mappings.
func releaseStartupPages() (int, error) {
	ranges, err := executableMappings()
	if err != nil {
		return 0, err
	}
	released := 0
	for _, r := range ranges {
		// Without read-ahead, a page read back is that page, not the 128 KiB
		// around it: with it, half of what was released came back with the
		// first calls. Code is read at random anyway.
		_ = madvise(r, unix.MADV_RANDOM)
		if err := madvise(r, unix.MADV_PAGEOUT); err != nil {
			if errors.Is(err, unix.EINVAL) && released == 0 {
				// Linux before 5.4, or a sandbox without it: the pages stay,
				// as they did before.
				return 0, fmt.Errorf("releasing start-up pages: this kernel cannot (MADV_PAGEOUT): %w", err)
			}
			return released, fmt.Errorf("releasing start-up pages: %w", err)
		}
		released += int(r.size)
	}
	return released, nil
}

// executableMappings returns this process's read-only mappings of its own
// executable (code, read-only data), found by the executable's inode.
func executableMappings() ([]mapping, error) {
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("finding the executable: %w", err)
	}
	st, ok := exe.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("finding the executable: no inode")
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("reading the mappings: %w", err)
	}
	defer f.Close()
	var ranges []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Contains(fields[1], "w") {
			continue
		}
		if inode, err := strconv.ParseUint(fields[4], 10, 64); err != nil || inode != st.Ino {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		ranges = append(ranges, mapping{uintptr(start), uintptr(end - start)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mappings: %w", err)
	}
	return ranges, nil
}

// mapping is a range of this process's address space. It stays a number:
// the memory is the program's own code, never read through it here.
type mapping struct{ start, size uintptr }

func madvise(m mapping, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.size, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}
