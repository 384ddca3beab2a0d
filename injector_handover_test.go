package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `authsidecar injector` is the injector program beside the binary, with the
// caller's environment and its exit status; without it, the error says where
// it was looked for and how to get it.
func TestInjectorSubcommandHandsOver(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "./internal/injector/cmd/authsidecar-injector")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	sidecar := filepath.Join(dir, "authsidecar")

	run := func() (string, int) {
		cmd := exec.Command(sidecar, "injector")
		cmd.Env = []string{"PATH=" + t.TempDir(), "INJECTOR_SIDECAR_IMAGE=", "INJECTOR_LISTEN_ADDR=:bad"}
		out, err := cmd.CombinedOutput()
		code := 0
		if exit, ok := err.(*exec.ExitError); ok {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}

	out, code := run()
	if code != 1 || !strings.Contains(out, "authsidecar injector: configuration: INJECTOR_SIDECAR_IMAGE") {
		t.Fatalf("with the injector beside it: exit %d, output %q; want the injector's own configuration error", code, out)
	}

	if err := os.Remove(filepath.Join(dir, "authsidecar-injector")); err != nil {
		t.Fatal(err)
	}
	out, code = run()
	if code != 1 || !strings.Contains(out, "authsidecar-injector is not installed beside this binary nor on PATH") ||
		!strings.Contains(out, "go build ./internal/injector/cmd/authsidecar-injector") {
		t.Fatalf("without the injector: exit %d, output %q", code, out)
	}
}
