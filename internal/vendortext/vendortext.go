// Package vendortext shortens text a vendor wrote before the sidecar quotes
// it in an error or a page: one line, bounded, and still valid UTF-8.
package vendortext

import (
	"strings"
	"unicode/utf8"
)

// Shorten folds s onto one line and cuts it to at most max bytes, on a rune
// boundary, marking the cut with an ellipsis.
func Shorten(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
