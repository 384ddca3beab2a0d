//go:build !unix

package app

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// execCompanion runs the companion as a child where a process cannot be
// replaced, and exits with its status.
func execCompanion(path string, argv []string) error {
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("running %s: %w", path, err)
	}
	os.Exit(0)
	return nil
}
