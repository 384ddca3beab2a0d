//go:build unix

package app

import (
	"fmt"
	"os"
	"syscall"
)

// execCompanion replaces this process, so that the companion is PID 1 of a
// container when the sidecar was, and receives its signals directly.
func execCompanion(path string, argv []string) error {
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	return nil // not reached: Exec returns only on failure
}
