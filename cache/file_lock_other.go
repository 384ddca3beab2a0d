//go:build !unix

package cache

import (
	"errors"
	"os"
)

func lockFile(string) (*os.File, error) {
	return nil, errors.New("a token store file needs a Unix system (file locks keep two processes off one file)")
}
