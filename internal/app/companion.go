package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// InjectorProgram is the program `authsidecar injector` hands over to. It
// ships beside the sidecar in the image; it is separate so that the sidecar
// in every pod does not carry the Kubernetes API types (see its package
// comment for the figures).
const InjectorProgram = "authsidecar-injector"

// RunCompanion runs the companion program name with args in place of this
// process, the way git runs git-foo for `git foo`: first the file beside
// this executable (the image's layout), then one on PATH. It returns only if
// the program cannot be started; where the platform replaces the process,
// signals and the exit status are the companion's own.
func RunCompanion(name string, args []string) error {
	path, err := findCompanion(name)
	if err != nil {
		return err
	}
	return execCompanion(path, append([]string{name}, args...))
}

func findCompanion(name string) (string, error) {
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), name)
		if info, err := os.Stat(beside); err == nil && !info.IsDir() {
			return beside, nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("looking for %s beside %s: %w", name, self, err)
		}
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is not installed beside this binary nor on PATH (the image ships it; "+
			"from source: go build ./internal/injector/cmd/%s): %w", name, name, err)
	}
	return path, nil
}
