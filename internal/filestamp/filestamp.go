// Package filestamp tells whether files changed since they were last read:
// a Kubernetes Secret volume swaps its ..data link, editors rename, both of
// which a stat (following links) sees as a new size or time.
package filestamp

import (
	"fmt"
	"os"
)

// Of is the files' sizes and modification times, in order; two equal stamps
// mean nothing was replaced in between.
func Of(paths ...string) (string, error) {
	var stamp string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return stamp, nil
}
