package cache_test

import (
	"bytes"
	"context"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/authsidecar/authsidecar/cache"
)

// A write the disk refuses (full, over quota) must fail the Set and leave
// the file as it was: the file is where a rotated refresh token outlives a
// restart, and a truncated one would lose every token at the next start.
// The file-size limit (RLIMIT_FSIZE) stands in for a full disk: the kernel
// refuses the write past it (EFBIG), as it would with ENOSPC.
func TestFileStoreKeepsItsFileWhenAWriteFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	ctx := context.Background()
	f, err := cache.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set(ctx, "token:a", []byte("rotated-once"), 0); err != nil {
		t.Fatal(err)
	}

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limited := old
	limited.Cur = 1024
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limited); err != nil {
		t.Skipf("cannot lower the file-size limit here: %v", err)
	}
	err = f.Set(ctx, "token:b", bytes.Repeat([]byte("x"), 4096), 0)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		t.Error("a Set the disk refused reported success")
	}
	if _, gerr := f.Get(ctx, "token:b"); gerr == nil {
		t.Error("a value that never reached the disk is served as stored")
	}
	f.Close()

	g, err := cache.OpenFile(path, nil)
	if err != nil {
		t.Fatalf("after a failed write the store no longer opens: %v", err)
	}
	defer g.Close()
	if v := mustGet(t, g, "token:a"); string(v) != "rotated-once" {
		t.Fatalf("after a failed write and a restart: %q", v)
	}
}
