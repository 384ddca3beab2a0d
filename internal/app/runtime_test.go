package app

import (
	"os"
	"runtime/debug"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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

// A limit set by GOMEMLIMIT (the runtime reads it at start) is logged as
// GOMEMLIMIT's, not as the container's.
func TestTuneRuntimeSaysWhereTheMemoryLimitCameFrom(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "64MiB")
	before := debug.SetMemoryLimit(64 << 20) // as the runtime does at start
	defer debug.SetMemoryLimit(before)
	gc := debug.SetGCPercent(100)
	defer debug.SetGCPercent(gc)
	core, logs := observer.New(zap.InfoLevel)
	TuneRuntime(zap.New(core))
	lines := logs.FilterMessage("soft memory limit").All()
	if len(lines) != 1 || lines[0].ContextMap()["from"] != "GOMEMLIMIT" || lines[0].ContextMap()["gomemlimit_bytes"] != int64(64<<20) {
		t.Fatalf("logged %v, want the 64 MiB limit from GOMEMLIMIT", logs.All())
	}
}
