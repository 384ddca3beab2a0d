package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A contender is one proxy under test, started fresh for each workload so
// that its peak RSS is that workload's.
type contender struct {
	name  string
	start func(w workload, port, dir string) (*exec.Cmd, error)
}

// workload is what the proxies forward to and how hard they are called.
type workload struct {
	name        string
	upstream    *upstream
	caFile      string // empty: plain HTTP
	connections int
}

func freePort() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return portOf(ln.Addr())
}

// pinProxies, when set, is the CPU list every proxy is confined to (-pin):
// with the load generator and the vendor stand-in on the other CPUs, a
// proxy's figures are its own, not what it lost sharing cores with them.
var pinProxies string

func run(dir, name string, env []string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	if pinProxies != "" {
		cmd = exec.Command("taskset", append([]string{"-c", pinProxies, name}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, cmd.Start()
}

func sidecar(bin string) func(w workload, port, dir string) (*exec.Cmd, error) {
	return func(w workload, port, dir string) (*exec.Cmd, error) {
		env := []string{"ROUTES=api", "API_UPSTREAM_URL=" + w.upstream.URL, "API_ACCESS_TOKEN=bench-token",
			"LISTEN_ADDR=127.0.0.1:" + port}
		if w.caFile != "" {
			env = append(env, "API_TLS_CA_FILE="+w.caFile)
		}
		return run(dir, bin, append(env, extraSidecarEnv...), "serve")
	}
}

// extraSidecarEnv is what -sidecar-env adds (ACCESS_LOG=off, GOGC=...).
var extraSidecarEnv []string

func bare(bin string) func(w workload, port, dir string) (*exec.Cmd, error) {
	return func(w workload, port, dir string) (*exec.Cmd, error) {
		return run(dir, bin, []string{"UPSTREAM=" + w.upstream.URL, "CA_FILE=" + w.caFile, "LISTEN_ADDR=127.0.0.1:" + port})
	}
}

// nginx runs one worker with a keep-alive upstream pool as large as the
// callers, adding the same header.
func nginx(w workload, port, dir string) (*exec.Cmd, error) {
	up := strings.TrimPrefix(strings.TrimPrefix(w.upstream.URL, "http://"), "https://")
	upPort := up[strings.LastIndex(up, ":")+1:]
	scheme, tlsLines := "http", ""
	if w.caFile != "" {
		scheme = "https"
		tlsLines = fmt.Sprintf(`proxy_ssl_trusted_certificate %s; proxy_ssl_verify on; proxy_ssl_name localhost;
			proxy_ssl_server_name on; proxy_ssl_session_reuse on;`, w.caFile)
	}
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
	upstream vendor { server 127.0.0.1:%[2]s; keepalive %[3]d; }
	server {
		listen 127.0.0.1:%[4]s;
		location /api/ {
			proxy_pass %[5]s://vendor/;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Authorization "Bearer bench-token";
			%[6]s
		}
	}
}
`, dir, upPort, w.connections, port, scheme, tlsLines)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return run(dir, "nginx", nil, "-p", dir, "-c", path, "-e", filepath.Join(dir, "nginx-error.log"))
}

// caddy runs with its defaults but for the upstream's CA.
func caddy(w workload, port, dir string) (*exec.Cmd, error) {
	up := strings.TrimPrefix(strings.TrimPrefix(w.upstream.URL, "http://"), "https://")
	transport := ""
	if w.caFile != "" {
		up = "https://" + up
		transport = fmt.Sprintf("transport http {\n\t\t\t\ttls_trusted_ca_certs %s\n\t\t\t}", w.caFile)
	}
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
}
http://127.0.0.1:%s {
	handle_path /api/* {
		reverse_proxy %s {
			header_up Authorization "Bearer bench-token"
			%s
		}
	}
}
`, port, up, transport)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return run(dir, "caddy", []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, "run", "--config", path, "--adapter", "caddyfile")
}

// waitServing waits until the proxy answers a call through to the upstream.
func waitServing(port string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/api/x")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving on %s: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pids are the process and its children (nginx's worker).
func pids(cmd *exec.Cmd) []int {
	out := []int{cmd.Process.Pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 2 && fields[1] == strconv.Itoa(cmd.Process.Pid) {
			out = append(out, pid)
		}
	}
	return out
}

// cpuSeconds is the user and system time the processes used so far.
func cpuSeconds(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		ticks += utime + stime
	}
	return ticks / 100 // USER_HZ
}

// memKiB sums a /proc/PID/status field (VmRSS, VmHWM) over the processes.
func memKiB(pids []int, field string) float64 {
	var kib float64
	for _, pid := range pids {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				kib += n
			}
		}
	}
	return kib
}

func stop(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
