// Command harness is bench/run's engine: it starts the vendor stand-ins,
// then nginx, Caddy (when installed), a bare httputil.ReverseProxy and the
// sidecar, loads each with wrk in turn, round after round, and prints
// req/s, p50, p99, CPU per 10k requests and RSS for each, and the
// sidecar's ratios to the others. It fails on a broken run (a proxy that
// does not serve, wrk errors), never on a timing.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	rounds := flag.Int("rounds", 3, "rounds; each loads every proxy once, in turn")
	duration := flag.Duration("duration", 8*time.Second, "each wrk run")
	sidecarBin := flag.String("sidecar", "", "the sidecar binary")
	baselineBin := flag.String("baseline", "", "another sidecar binary to compare (today's, say)")
	bareBin := flag.String("bare", "", "the bare httputil.ReverseProxy binary")
	only := flag.String("workloads", "a,b-h1,b-h2", "workloads to run")
	sidecarEnv := flag.String("sidecar-env", "", "extra variables for the sidecar, comma-separated (ACCESS_LOG=off)")
	flag.StringVar(&pinProxies, "pin", "", "CPUs each proxy runs on (taskset -c); run the harness on the others: taskset -c 0 bench/run -pin 1")
	flag.Parse()
	if *sidecarEnv != "" {
		extraSidecarEnv = strings.Split(*sidecarEnv, ",")
	}
	if _, err := exec.LookPath("taskset"); pinProxies != "" && err != nil {
		log.Fatal("-pin needs taskset (util-linux)")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		log.Fatal("wrk is not installed (apt-get install wrk)")
	}
	dir, err := os.MkdirTemp("", "authsidecar-bench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	contenders := []contender{}
	if _, err := exec.LookPath("nginx"); err == nil {
		contenders = append(contenders, contender{"nginx", nginx})
	}
	if _, err := exec.LookPath("caddy"); err == nil {
		contenders = append(contenders, contender{"caddy", caddy})
	}
	contenders = append(contenders, contender{"bare", bare(*bareBin)})
	if *baselineBin != "" {
		contenders = append(contenders, contender{"baseline", sidecar(*baselineBin)})
	}
	contenders = append(contenders, contender{"sidecar", sidecar(*sidecarBin)})

	cert, caFile, err := privateCA(dir)
	if err != nil {
		log.Fatal(err)
	}
	plain, err := startPlain()
	if err != nil {
		log.Fatal(err)
	}
	h1, _ := startTLS(cert, 20*time.Millisecond, false)
	h2, _ := startTLS(cert, 20*time.Millisecond, true)
	workloads := map[string]workload{
		"a":    {name: "a: keep-alive upstream answering ok, 64 callers", upstream: plain, connections: 64},
		"b-h1": {name: "b: HTTPS vendor (private CA), HTTP/1.1, 20 ms per answer, 256 callers", upstream: h1, caFile: caFile, connections: 256},
		"b-h2": {name: "b: HTTPS vendor (private CA), offers h2, 20 ms per answer, 256 callers", upstream: h2, caFile: caFile, connections: 256},
	}
	broken := false
	for _, key := range strings.Split(*only, ",") {
		w, ok := workloads[key]
		if !ok {
			log.Fatalf("no workload %q", key)
		}
		results, err := runWorkload(w, contenders, *rounds, *duration, dir)
		if err != nil {
			log.Printf("workload %s: %v", key, err)
			broken = true
			continue
		}
		report(os.Stdout, w, results)
	}
	for _, name := range []string{"bare", "sidecar"} {
		for _, c := range contenders {
			if c.name == name {
				kib, err := idleCallerCost(c, workloads["a"], dir)
				if err != nil {
					log.Printf("idle callers, %s: %v", name, err)
					broken = true
					continue
				}
				fmt.Printf("an idle keep-alive caller costs %s %.1f KiB\n", name, kib)
			}
		}
	}
	if broken {
		os.Exit(1)
	}
}

// result is one contender's figures over the rounds of a workload.
type result struct {
	name                    string
	rps, p50, p99           []float64 // per round; latencies in ms
	cpuPer10k               []float64
	peakRSS, idleRSS        float64 // MiB
	handshakes, resumptions int64
	requests                int64
}

func runWorkload(w workload, contenders []contender, rounds int, d time.Duration, dir string) ([]*result, error) {
	type running struct {
		c    contender
		cmd  *exec.Cmd
		port string
		res  *result
	}
	var all []*running
	defer func() {
		for _, r := range all {
			stop(r.cmd)
		}
	}()
	for _, c := range contenders {
		port := freePort()
		cdir := filepath.Join(dir, w.upstream.URL[strings.LastIndex(w.upstream.URL, ":")+1:]+"-"+c.name)
		os.MkdirAll(cdir, 0o755)
		cmd, err := c.start(w, port, cdir)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", c.name, err)
		}
		r := &running{c: c, cmd: cmd, port: port, res: &result{name: c.name}}
		all = append(all, r)
		if err := waitServing(port); err != nil {
			return nil, fmt.Errorf("%s: %w (log in %s)", c.name, err, cdir)
		}
		// Idle is after start-up has settled (the sidecar gives back its
		// start-up pages two seconds after it listens) and a call.
		time.Sleep(3 * time.Second)
		if err := waitServing(port); err != nil {
			return nil, fmt.Errorf("%s: %w (log in %s)", c.name, err, cdir)
		}
		time.Sleep(200 * time.Millisecond)
		r.res.idleRSS = memKiB(pids(cmd), "VmRSS") / 1024
	}
	for round := range rounds {
		// Interleaved, and in a turning order, so that no proxy always
		// runs first or last.
		for i := range all {
			r := all[(i+round)%len(all)]
			conns, resumed := w.upstream.conns.Load(), w.upstream.resumed.Load()
			ps := pids(r.cmd)
			cpu := cpuSeconds(ps)
			out, err := wrk(r.port, w.connections, d)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.c.name, err)
			}
			r.res.rps = append(r.res.rps, out.rps)
			r.res.p50 = append(r.res.p50, out.p50)
			r.res.p99 = append(r.res.p99, out.p99)
			r.res.cpuPer10k = append(r.res.cpuPer10k, (cpuSeconds(ps)-cpu)/float64(out.requests)*10000)
			r.res.handshakes += w.upstream.conns.Load() - conns
			r.res.resumptions += w.upstream.resumed.Load() - resumed
			r.res.requests += out.requests
		}
	}
	var results []*result
	for _, r := range all {
		r.res.peakRSS = memKiB(pids(r.cmd), "VmHWM") / 1024
		results = append(results, r.res)
	}
	return results, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// idleCallerCost opens keep-alive callers that each make one call and then
// stay idle, and returns what each costs the proxy in RSS.
func idleCallerCost(c contender, w workload, dir string) (float64, error) {
	port := freePort()
	cdir := filepath.Join(dir, "idle-"+c.name)
	os.MkdirAll(cdir, 0o755)
	cmd, err := c.start(w, port, cdir)
	if err != nil {
		return 0, err
	}
	defer stop(cmd)
	if err := waitServing(port); err != nil {
		return 0, err
	}
	const callers = 1000
	time.Sleep(300 * time.Millisecond)
	before := memKiB(pids(cmd), "VmRSS")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range callers {
		conn, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			return 0, err
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "GET /api/x HTTP/1.1\r\nHost: bench\r\n\r\n")
	}
	buf := make([]byte, 4096)
	for _, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			return 0, err
		}
	}
	time.Sleep(500 * time.Millisecond)
	return (memKiB(pids(cmd), "VmRSS") - before) / callers, nil
}
