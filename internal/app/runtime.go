package app

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
)

// defaultGCPercent is the GC pacing of a serving sidecar when GOGC is not
// set. The default, 100, collects every time the heap doubles a live heap
// of a few MiB: under load that is hundreds of collections a second, a
// fifth of the CPU. 200 halves them for a few MiB more at peak (bench/run:
// peak RSS within 40 MiB at 64 callers); the memory limit below keeps a
// container from paying for it in OOM kills.
const defaultGCPercent = 200

// TuneRuntime sets the Go runtime for serving: a soft memory limit at 90%
// of the container's (cgroup) limit, so the GC works harder before the
// kernel would kill the pod, and GC pacing. GOMEMLIMIT and GOGC, when set,
// win (and AUTOMEMLIMIT=off leaves the limit alone).
func TuneRuntime(log *zap.Logger) {
	limit, err := memlimit.Set(memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup))
	// With GOMEMLIMIT set, memlimit leaves the runtime's limit as it is and
	// returns it: the line must say where it came from.
	from := "90% of the container's (cgroup) limit"
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		from = "GOMEMLIMIT"
	}
	switch {
	case err != nil:
		log.Debug("no memory limit from a cgroup; GOMEMLIMIT unset", zap.Error(err))
	case limit > 0 && limit < math.MaxInt64:
		log.Info("soft memory limit", zap.Int64("gomemlimit_bytes", limit), zap.String("from", from))
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// startupPagesAfter is how long after it starts listening the sidecar
// gives back its start-up pages. Start-up probes run `authsidecar healthcheck`,
// the same binary, every second until the sidecar is ready: pages a probe maps
// at that moment stay in the page cache, and the sidecar's next page faults
// map them back in with their neighbours. By now those probes have ended.
const startupPagesAfter = 2 * time.Second

// ReleaseStartupPages gives back the pages of the binary that only
// start-up needed (package inits, configuration, route building), shortly
// after the sidecar is ready to serve: see releaseStartupPages. It logs what
// it did; where the kernel cannot, the sidecar runs as before.
func ReleaseStartupPages(ctx context.Context, log *zap.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(startupPagesAfter):
	}
	before := residentFileBytes()
	mapped, err := releaseStartupPages()
	if err != nil {
		log.Debug("start-up pages kept", zap.Error(err))
		return
	}
	log.Debug("start-up pages released", zap.Int("mapped_bytes", mapped),
		zap.Int64("resident_before_bytes", before), zap.Int64("resident_after_bytes", residentFileBytes()))
}
