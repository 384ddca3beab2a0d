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
	ranges, err := executableMappings()
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
	dropCachedPages()
	return released, nil
}

// dropCachedPages asks the kernel to drop the executable's pages that no
// process maps from the page cache. Otherwise each page read back maps up to
// 64 KiB of cached neighbours with it (fault-around), and a few calls bring
// back most of what was released. Pages other processes map (sidecars of the
// same image on the node) are kept.
func dropCachedPages() {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// executableMappings returns this process's read-only mappings of its own
// executable (found by inode) that hold no private copy of any page.
func executableMappings() ([]mapping, error) {
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("finding the executable: %w", err)
	}
	st, ok := exe.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("finding the executable: no inode")
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("reading the mappings: %w", err)
	}
	defer f.Close()
	var ranges []mapping
	var current *mapping // the executable's read-only mapping being read
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// A mapping's first line: address perms offset dev inode path.
			current = nil
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
			current = &ranges[len(ranges)-1]
			continue
		}
		if current != nil && fields[0] == "Anonymous:" && (len(fields) < 2 || fields[1] != "0") {
			ranges = ranges[:len(ranges)-1] // a private copy: leave it alone
			current = nil
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
