package main

import (
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

type wrkOut struct {
	rps, p50, p99 float64 // latencies in ms
	requests      int64
}

// wrk loads the proxy on port with conns connections for d.
func wrk(port string, conns int, d time.Duration) (wrkOut, error) {
	threads := 2
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(),
		"--latency", "http://127.0.0.1:"+port+"/api/x").CombinedOutput()
	if err != nil {
		return wrkOut{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(text string) (wrkOut, error) {
	var w wrkOut
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			w.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			w.p50 = millis(f[1])
		case len(f) == 2 && f[0] == "99%":
			w.p99 = millis(f[1])
		case len(f) > 3 && f[1] == "requests" && f[2] == "in":
			w.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case len(f) > 1 && (f[0] == "Non-2xx" || f[0] == "Socket"):
			return w, fmt.Errorf("wrk saw failures: %s", line)
		}
	}
	if w.rps == 0 || w.requests == 0 {
		return w, fmt.Errorf("wrk printed no figures:\n%s", text)
	}
	return w, nil
}

func millis(s string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * u.ms
		}
	}
	return 0
}

// report prints a workload's table and the sidecar's ratios.
func report(out io.Writer, w workload, results []*result) {
	fmt.Fprintf(out, "\n== workload %s\n", w.name)
	fmt.Fprintf(out, "%-9s %10s %9s %9s %14s %10s %10s %11s\n", "proxy", "req/s", "p50 ms", "p99 ms", "CPU s/10k req", "peak MiB", "idle MiB", "new conns")
	var side *result
	for _, r := range results {
		fmt.Fprintf(out, "%-9s %10.0f %9.2f %9.2f %14.3f %10.1f %10.1f %11d\n", r.name, median(r.rps), median(r.p50), median(r.p99),
			median(r.cpuPer10k), r.peakRSS, r.idleRSS, r.handshakes)
		if r.name == "sidecar" {
			side = r
		}
	}
	if side == nil {
		return
	}
	for _, r := range results {
		if r == side {
			continue
		}
		fmt.Fprintf(out, "sidecar / %-8s req/s %.2f×  p99 %.2f×  CPU/req %.2f×\n", r.name,
			median(side.rps)/median(r.rps), median(side.p99)/median(r.p99), median(side.cpuPer10k)/median(r.cpuPer10k))
	}
}
