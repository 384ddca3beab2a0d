package vendortext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestShortenCutsOnARuneBoundary(t *testing.T) {
	// 'é' is two bytes: a byte cut at 5 would split the third one.
	got := Shorten("ééééé", 5)
	if !utf8.ValidString(got) {
		t.Fatalf("Shorten produced invalid UTF-8: %q", got)
	}
	if got != "éé…" {
		t.Fatalf("Shorten = %q, want %q", got, "éé…")
	}
}

func TestShortenFoldsLinesAndKeepsShortText(t *testing.T) {
	if got := Shorten("a\n  b\tc", 10); got != "a b c" {
		t.Fatalf("Shorten = %q", got)
	}
	long := strings.Repeat("x", 300)
	if got := Shorten(long, 200); got != strings.Repeat("x", 200)+"…" {
		t.Fatalf("Shorten of long ASCII = %d bytes", len(got))
	}
}
