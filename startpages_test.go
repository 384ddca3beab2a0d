//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A serving sidecar keeps resident the code that serving needs, not all
// that start-up ran: after start and a call, its file-backed RSS (pages of
// the binary) is well under the binary's size. Without the release it was
// 58-77% of it (16-21 MiB of 27.5 MB). It runs as in its image — a non-root
// user, a root-owned binary it cannot write (MADV_PAGEOUT does nothing to
// such a file: 55%) — probed by the same binary beside it, as a kubelet's
// exec probes do: about 35%.
func TestServeReleasesStartupPages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildSidecar(t)
	upstream := staticTokenUpstream(t)
	addr, cmd, pages := startServing(t, bin, upstream.URL)

	// Probes as a kubelet runs them: `authsidecar healthcheck`, the same
	// binary, until the sidecar is ready, then now and then. Each maps the
	// pages it runs while it runs.
	probe := func() error {
		p := exec.Command(bin, "healthcheck")
		p.Env = []string{"LISTEN_ADDR=" + addr}
		return p.Run()
	}
	for deadline := time.Now().Add(10 * time.Second); probe() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar never became ready")
		}
	}
	probing := make(chan struct{})
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			select {
			case <-probing:
				return
			case <-time.After(2 * time.Second):
				_ = probe()
			}
		}
	}()
	waitForRelease(t, pages)
	close(probing)
	<-probed
	callThrough(t, addr)

	info, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	fileKiB := statusKiB(t, cmd.Process.Pid, "RssFile")
	share := float64(fileKiB*1024) / float64(info.Size())
	t.Logf("resident pages of the binary after start and a call: %d KiB, %.0f%% of its %d bytes", fileKiB, share*100, info.Size())
	if share > 0.40 {
		t.Fatalf("%.0f%% of the binary stays resident (%d KiB); want under 40%%", share*100, fileKiB)
	}
}

// A binary relocated at load time (-buildmode=pie: the dynamic loader writes
// pointers into its read-only data) keeps those pages: unmapped, they would
// be read back unrelocated from the file — the sidecar crashed on its next
// call that way (SIGSEGV), before such mappings were left alone.
func TestServeKeepsRelocatedPages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildSidecar(t, "-buildmode=pie")
	if err := exec.Command(bin, "version").Run(); err != nil {
		t.Skipf("a position-independent build does not run here: %v", err)
	}
	upstream := staticTokenUpstream(t)
	addr, cmd, pages := startServing(t, bin, upstream.URL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sidecar never listened")
		}
	}
	waitForRelease(t, pages)
	for range 3 {
		callThrough(t, addr)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the sidecar is gone: %v", err)
	}
}

// buildSidecar builds the binary as the image has it: static, stripped,
// root's and read-only, written to disk (an image pulled a while ago; the
// kernel keeps dirty pages in the cache until then) and in the page cache
// whole (as on a node that just pulled it: the kernel then maps the most
// around each page touched).
func buildSidecar(t *testing.T, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // the image's user reads them
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "authsidecar")
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", bin}, flags...)
	build := exec.Command("go", append(args, ".")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	if err := exec.Command("sync", bin).Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o555); err != nil {
		t.Fatal(err)
	}
	return bin
}

func staticTokenUpstream(t *testing.T) *httptest.Server {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer static-token" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(upstream.Close)
	return upstream
}

// startServing runs `serve` with one static-token route, as the image's
// user when the test can switch to it, and passes on its log lines about
// start-up pages.
func startServing(t *testing.T, bin, upstream string) (addr string, cmd *exec.Cmd, pages <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	cmd = exec.Command(bin, "serve")
	cmd.Env = []string{"ROUTES=api", "API_UPSTREAM_URL=" + upstream, "API_ACCESS_TOKEN=static-token",
		"LISTEN_ADDR=" + addr, "LOG_LEVEL=debug"}
	if os.Getuid() == 0 {
		// The image's user, nonroot.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	}
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, "start-up pages") {
				lines <- line
			}
		}
	}()
	return addr, cmd, lines
}

func waitForRelease(t *testing.T, pages <-chan string) {
	t.Helper()
	select {
	case line := <-pages:
		if strings.Contains(line, "kept") {
			t.Skipf("this kernel keeps the pages: %s", line)
		}
		t.Log(line)
	case <-time.After(20 * time.Second):
		t.Error("no log line about start-up pages")
	}
}

func callThrough(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/x")
	if err != nil {
		t.Fatalf("call through the sidecar: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("call through the sidecar: %s", resp.Status)
	}
}

// statusKiB reads a "Name:  N kB" line of /proc/PID/status.
func statusKiB(t *testing.T, pid int, name string) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(l, name+":"); ok {
			var kib int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}
