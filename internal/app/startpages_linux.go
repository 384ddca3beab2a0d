package app

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages unmaps from this process the pages of its own code
// and read-only data, and returns the size of the mappings it released.
//
// Go runs the init of every linked package at start-up, and the kernel maps
// each page touched with up to 64 KiB of its neighbours (fault-around), so
// about 16 MiB of a 27 MB binary stayed resident in every pod although
// serving calls needs about 6. The pages are clean copies of the executable
// file: unmapped, a page needed again is mapped back from the page cache (or
// read from the file) on its next use, and the rest is the kernel's to
// reclaim first.
//
// MADV_COLD puts them at the cold end of the kernel's lists (and out of a
// container's working set); MADV_DONTNEED unmaps them. MADV_PAGEOUT would
// free them outright, but Linux does that only for a file the process may
// write — never the case for a sidecar running as a non-root user from a
// root-owned image. DONTNEED re-reads a private mapping from its file, so it
// is asked only of mappings with no private copy of any page (a binary
// relocated at load time has some); a static Go binary's have none.
func releaseStartupPages() (int, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	defer exe.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(exe.Fd()), &st); err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	ranges, err := executableMappings(st.Ino)
	if err != nil {
		return 0, err
	}
	if len(ranges) == 0 {
		return 0, errors.New("releasing start-up pages: no read-only, unmodified mapping of the executable found")
	}
	released := 0
	for _, r := range ranges {
		// Linux before 5.4 has no MADV_COLD; unmapping is enough there.
		_ = madvise(r, unix.MADV_COLD)
		// Without read-ahead, a page read back from the file is that page,
		// not the 128 KiB around it. Code is read at random anyway.
		_ = madvise(r, unix.MADV_RANDOM)
		if err := madvise(r, unix.MADV_DONTNEED); err != nil {
			return released, fmt.Errorf("releasing start-up pages: %w", err)
		}
		released += int(r.size)
	}
	// Drop the executable's pages that no process maps from the page
	// cache. Otherwise each page read back maps up to 64 KiB of cached
	// neighbours with it (fault-around), and a few calls bring back most of
	// what was released. Pages other processes map (sidecars of the same
	// image on the node) are kept.
	_ = unix.Fadvise(int(exe.Fd()), 0, 0, unix.FADV_DONTNEED)
	return released, nil
}

// executableMappings returns this process's read-only mappings of the
// executable file with inode ino that hold no private copy of any page.
func executableMappings(ino uint64) ([]mapping, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("reading the mappings: %w", err)
	}
	defer f.Close()
	var ranges []mapping
	inExe := false // the lines read belong to the last mapping in ranges
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// A mapping's first line: address perms offset dev inode path.
			inExe = false
			if len(fields) < 6 || strings.Contains(fields[1], "w") {
				continue
			}
			if inode, err := strconv.ParseUint(fields[4], 10, 64); err != nil || inode != ino {
				continue
			}
			lo, hi, _ := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil || end <= start {
				continue
			}
			ranges = append(ranges, mapping{uintptr(start), uintptr(end - start)})
			inExe = true
			continue
		}
		if inExe && fields[0] == "Anonymous:" && (len(fields) < 2 || fields[1] != "0") {
			ranges = ranges[:len(ranges)-1] // a private copy: leave it alone
			inExe = false
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mappings: %w", err)
	}
	return ranges, nil
}

// residentFileBytes is how much of the files this process maps is resident
// (RssFile), 0 when unknown.
func residentFileBytes() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
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
