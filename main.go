// Command authsidecar is an authenticating reverse proxy: calls to
// http://localhost:8080/ROUTE/path go to the route's upstream with a valid
// OAuth2 token added, obtained and refreshed by the sidecar.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/authsidecar/authsidecar/internal/app"
	"github.com/authsidecar/authsidecar/internal/config"
	demopkg "github.com/authsidecar/authsidecar/internal/demo"
	"github.com/authsidecar/authsidecar/internal/injector"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
// Unstamped, versionString reads the module's build information.
var version = ""

// versionString is the stamped version or, for go build, go install and go
// run, what the Go toolchain recorded: the module version (a pseudo-version
// naming the commit, +dirty for local changes), else the VCS revision.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "devel-" + rev + dirty + " (" + bi.GoVersion + ")"
	}
	return "devel (" + bi.GoVersion + ", built without version control information)"
}

const usage = `authsidecar — an authenticating reverse proxy for OAuth2 APIs

Usage:
  authsidecar [serve]        run the sidecar, configured by environment variables
  authsidecar injector       serve the Kubernetes admission webhook that injects
                             the sidecar into labelled pods (INJECTOR_* variables)
  authsidecar demo           run emulators of the four vendors and the sidecar in
                             front of them, and print curl commands to try
  authsidecar login ROUTE [--account NAME]
                             give consent for ROUTE (or one of its accounts, made if
                             new) from a terminal (authorization code)
  authsidecar token ROUTE    print a current access token of ROUTE
  authsidecar revoke ROUTE [--account NAME]
                             revoke ROUTE's token (or an account's) at the vendor
  authsidecar accounts list ROUTE
                             list ROUTE's vendor accounts
  authsidecar accounts add ROUTE NAME [--access-token] < token
                             add an account from a refresh token (or an access
                             token) read from standard input
  authsidecar healthcheck [live]
                             exit 0 if the sidecar on LISTEN_ADDR is ready (or, with
                             live, alive), else 1: for container health checks and
                             probes of a sidecar that listens on loopback
  authsidecar version        print the version

login, token and revoke read the same environment as the sidecar.
Configuration: see config.example.env and README.md.
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "authsidecar:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve", "demo", "version", "--version":
		if len(args) > 1 {
			// Configured by the environment: an argument is a mistake
			// (a flag from another tool, a typo), not something to ignore.
			fmt.Fprint(os.Stderr, usage)
			return fmt.Errorf("%s takes no arguments (got %q); it is configured by environment variables", cmd, args[1:])
		}
	}
	switch cmd {
	case "serve":
		return serve()
	case "demo":
		return demo()
	case "injector":
		return runInjector(args[1:])
	case "revoke", "login":
		if len(args) == 4 && args[2] == "--account" {
			return operate(cmd, args[1], args[3])
		}
		if len(args) != 2 {
			fmt.Fprint(os.Stderr, usage)
			return fmt.Errorf("%s needs a route name (and --account NAME for one of its accounts)", cmd)
		}
		return operate(cmd, args[1])
	case "token":
		if len(args) != 2 {
			fmt.Fprint(os.Stderr, usage)
			return fmt.Errorf("%s needs a route name", cmd)
		}
		return operate(cmd, args[1])
	case "accounts":
		switch {
		case len(args) == 3 && args[1] == "list":
			return operate("accounts-list", args[2])
		case (len(args) == 4 || len(args) == 5 && args[4] == "--access-token") && args[1] == "add":
			return operate("accounts-add", args[2], args[3:]...)
		}
		fmt.Fprint(os.Stderr, usage)
		return errors.New("accounts: use accounts list ROUTE, or accounts add ROUTE NAME [--access-token] < token")
	case "healthcheck":
		// Strict: a liveness probe written "healthcheck ready" or
		// "healthcheck --live" must not quietly check readiness, or a
		// draining sidecar would be restarted.
		switch {
		case len(args) == 1:
			return healthcheck("/readyz")
		case len(args) == 2 && args[1] == "live":
			return healthcheck("/healthz")
		}
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("healthcheck takes nothing (readiness) or live (liveness), got %q", args[1:])
	case "version", "--version":
		fmt.Println(versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func serve() error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log, err := app.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer func() { _ = log.Sync() }()
	app.TuneRuntime(log)

	a, err := app.New(cfg, log)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("LISTEN_ADDR: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go app.ReleaseStartupPages(ctx, log)
	if err := a.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func demo() error {
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	log, err := app.NewLogger("info", "console")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("LISTEN_ADDR: %w (set LISTEN_ADDR=127.0.0.1:18080 to use another port)", err)
	}
	d, err := demopkg.Start(ln, log)
	if err != nil {
		return err
	}
	d.PrintIntro(os.Stdout)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return d.Serve(ctx)
}

// runInjector serves the Kubernetes admission webhook, configured by
// INJECTOR_* variables. It is linked into the sidecar's binary: with the
// start-up pages given back (app.ReleaseStartupPages), the Kubernetes API
// types cost an idle sidecar about 0.5 MiB.
func runInjector(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("injector takes no arguments (got %q): it is configured by INJECTOR_* variables", args)
	}
	cfg, err := injector.LoadConfig(config.Environ())
	if err != nil {
		return fmt.Errorf("injector: configuration: %w", err)
	}
	log, err := app.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("injector: configuration: %w", err)
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := injector.Run(ctx, cfg, log); err != nil {
		return fmt.Errorf("injector: %w", err)
	}
	return nil
}

// operate runs an operator's command against a route, configured as the
// sidecar is. Logs go to stderr at warn level, so stdout holds the answer.
func operate(cmd, route string, more ...string) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log, err := app.NewLogger("warn", "console")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	a, err := app.New(cfg, log)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch cmd {
	case "login":
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		return a.Login(ctx, route, strings.Join(more, ""), os.Stdout)
	case "token":
		ctx, cancel := context.WithTimeout(ctx, 2*cfg.TokenTimeout)
		defer cancel()
		return a.PrintToken(ctx, route, os.Stdout)
	case "accounts-list":
		names, err := a.ListAccounts(ctx, route)
		for _, n := range names {
			fmt.Println(n)
		}
		return err
	case "accounts-add":
		if cfg.RedisURL == "" && cfg.TokenStorePath == "" {
			return errors.New("accounts live in the token store, which this process would forget: set REDIS_URL or TOKEN_STORE_PATH as the sidecar has them")
		}
		// The token comes from standard input, never an argument, which
		// the process list and shell history would show.
		raw, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		if err != nil {
			return fmt.Errorf("reading the token from standard input: %w", err)
		}
		if err := a.AddAccount(ctx, route, more[0], strings.TrimSpace(string(raw)), len(more) > 1); err != nil {
			return err
		}
		fmt.Printf("Added account %s to route %s.\n", more[0], route)
		return nil
	default:
		ctx, cancel := context.WithTimeout(ctx, 2*cfg.TokenTimeout)
		defer cancel()
		if len(more) == 1 {
			revoked, err := a.RevokeAccount(ctx, route, more[0])
			if err != nil {
				return err
			}
			if !revoked {
				fmt.Printf("Removed account %s of route %s; not revoked at the vendor (set %sREVOKE_URL).\n", more[0], route, config.RoutePrefix(route))
				return nil
			}
			fmt.Printf("Revoked and removed account %s of route %s.\n", more[0], route)
			return nil
		}
		if err := a.Revoke(ctx, route); err != nil {
			return err
		}
		fmt.Printf("Revoked route %s's token. Remove it from the configuration (%sACCESS_TOKEN or %sREFRESH_TOKEN) if it is there.\n",
			route, config.RoutePrefix(route), config.RoutePrefix(route))
		return nil
	}
}

// healthcheck asks the running sidecar's path (/readyz or /healthz).
func healthcheck(path string) error {
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("LISTEN_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address includes loopback
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + path)
	if err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not healthy: %s answered %d", path, resp.StatusCode)
	}
	return nil
}
