//go:build !linux

package app

import "errors"

// releaseStartupPages is Linux's (madvise, fadvise); elsewhere the pages stay.
func releaseStartupPages() (int, error) {
	return 0, errors.New("releasing start-up pages: only on Linux")
}

func residentFileBytes() int64 { return 0 }
