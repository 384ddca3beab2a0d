package app

import (
	"os"
	"runtime/debug"
	"testing"

	"go.uber.org/zap"
)

// A serving sidecar paces its GC at GOGC=200 unless GOGC says otherwise.
func TestTuneRuntimeGCPacing(t *testing.T) {
	was, set := os.LookupEnv("GOGC")
	os.Unsetenv("GOGC")
	defer func() {
		if set {
			os.Setenv("GOGC", was)
		}
	}()
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	TuneRuntime(zap.NewNop())
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	t.Setenv("GOGC", "50")
	TuneRuntime(zap.NewNop())
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC set: the sidecar changed the GC percent to %d", got)
	}
}
