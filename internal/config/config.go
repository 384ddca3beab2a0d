// Package config reads the sidecar's settings from the environment. Every
// error names the variable that caused it.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/proxy"
)

// Config is the whole configuration.
type Config struct {
	ListenAddr string `env:"LISTEN_ADDR" envDefault:"127.0.0.1:8080"`
	RoutesList string `env:"ROUTES"`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat  string `env:"LOG_FORMAT" envDefault:"json"`
	// AccessLog is which proxied calls get a log line: all, sampled (the
	// first 10 each second, then one in 100) or off. Errors, replays and
	// broken answers always do.
	AccessLog      string `env:"ACCESS_LOG" envDefault:"all"`
	MaxReplayBytes int64  `env:"MAX_REPLAY_BYTES" envDefault:"1048576"`
	// ReplayBudgetBytes bounds the memory every call's kept bodies hold
	// together; past it, bodies stream and are not replayed.
	ReplayBudgetBytes int64         `env:"REPLAY_BUDGET_BYTES" envDefault:"67108864"`
	UpstreamTimeout   time.Duration `env:"UPSTREAM_TIMEOUT" envDefault:"30s"`
	TokenTimeout      time.Duration `env:"TOKEN_TIMEOUT" envDefault:"10s"`
	RefreshMargin     time.Duration `env:"REFRESH_MARGIN" envDefault:"60s"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`
	// BodyIdleTimeout ends a caller's upload that stalls this long.
	BodyIdleTimeout  time.Duration `env:"BODY_IDLE_TIMEOUT" envDefault:"30s"`
	ShutdownDelay    time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`
	ForwardedHeaders bool          `env:"FORWARDED_HEADERS" envDefault:"false"`
	// ForwardTraceparent lets vendors see the trace context (W3C
	// traceparent): off, the sidecar removes it, since trace ids are
	// internal.
	ForwardTraceparent bool   `env:"FORWARD_TRACEPARENT" envDefault:"false"`
	RedisURL           string `env:"REDIS_URL"`
	RedisMode          string `env:"REDIS_MODE" envDefault:"single"`
	RedisKeyPrefix     string `env:"REDIS_KEY_PREFIX" envDefault:"authsidecar:"`
	// TokenStorePath, when set, keeps tokens in a sealed file for a single
	// instance, across restarts, without Redis.
	TokenStorePath string `env:"TOKEN_STORE_PATH"`
	// StoreTimeout bounds each operation on the shared store; a store
	// slower than this counts as down.
	StoreTimeout time.Duration `env:"STORE_TIMEOUT" envDefault:"500ms"`
	// The keys are kept as given; Keys() decodes them.
	TokenEncryptionKey         string `env:"TOKEN_ENCRYPTION_KEY"`
	TokenEncryptionKeyPrevious string `env:"TOKEN_ENCRYPTION_KEY_PREVIOUS"`
	AdminToken                 string `env:"ADMIN_TOKEN"`
	MetricsAddr                string `env:"METRICS_ADDR"`
	// ClientKeys, when set, are the keys callers must present (header
	// X-Authsidecar-Key) to use the routes, as given: NAME:KEY or KEY.
	ClientKeys []string `env:"CLIENT_KEYS" envSeparator:","`
	// Clients are ClientKeys read, each with what it may reach
	// (KeyRules, from CLIENT_KEY_<NAME>_ROUTES and _ACCOUNTS).
	Clients  []proxy.ClientKey  `env:"-"`
	KeyRules map[string]KeyRule `env:"-"`

	Routes []Route `env:"-"`
	// SecretFiles are the secret variables read from files (X_FILE) and
	// the routes' key, certificate, assertion and token files, to watch.
	SecretFiles []SecretFile `env:"-"`
	// Warnings are what start-up should say about the environment without
	// stopping: variables that look mistyped.
	Warnings []string `env:"-"`
}

// Load reads the configuration from the process environment.
func Load() (*Config, error) { return LoadFrom(Environ()) }

// Environ is the process environment as a map.
func Environ() map[string]string { return envMap(os.Environ()) }

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// LoadFrom reads the configuration from environ, a map of variables. Values
// are used with surrounding white space trimmed: a value read from a file
// (kubectl create secret --from-file) usually ends in a newline.
func LoadFrom(environ map[string]string) (*Config, error) {
	environ = trimmed(environ)
	var c Config
	if err := checkControlCharacters(environ, globalNames(), ""); err != nil {
		return nil, err
	}
	files, err := resolveFiles(environ, "", "", globalSecrets)
	if err != nil {
		return nil, err
	}
	c.SecretFiles = files
	if err := parse(&c, env.Options{Environment: environ}); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	names, err := parseRouteNames(c.RoutesList)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		r := Route{Name: name, Prefix: RoutePrefix(name)}
		if err := checkControlCharacters(environ, routeNames(), r.Prefix); err != nil {
			return nil, err
		}
		files, err := resolveFiles(environ, r.Prefix, name, routeSecrets)
		if err != nil {
			return nil, err
		}
		c.SecretFiles = append(c.SecretFiles, files...)
		if err := parse(&r, env.Options{Environment: environ, Prefix: r.Prefix}); err != nil {
			return nil, err
		}
		if err := r.checkLimits(); err != nil {
			return nil, err
		}
		if r.Preset == "" {
			r.Preset = "oauth2"
			if _, ok := auth.LookupPreset(name); ok {
				r.Preset = name
			}
		}
		preset, ok := auth.LookupPreset(r.Preset)
		if !ok {
			return nil, fmt.Errorf("%sPRESET: unknown preset %q (known: %s)", r.Prefix, r.Preset, strings.Join(auth.PresetNames(), ", "))
		}
		for _, opt := range preset.Options {
			if v, ok := environ[r.Prefix+opt]; ok {
				if r.Options == nil {
					r.Options = map[string]string{}
				}
				r.Options[opt] = v
			}
		}
		c.Routes = append(c.Routes, r)
		c.SecretFiles = append(c.SecretFiles, r.credentialFiles()...)
	}
	rules, ruleVariables, err := parseKeyRules(environ, names)
	if err != nil {
		return nil, err
	}
	if c.Clients, err = ClientKeys(c.ClientKeys, rules); err != nil {
		return nil, fmt.Errorf("CLIENT_KEYS: %w", err)
	}
	if err := checkRulesHaveKeys(rules, c.Clients); err != nil {
		return nil, err
	}
	c.KeyRules = rules
	c.Warnings = mistyped(environ, c.Routes, ruleVariables)
	return &c, nil
}

// maxReplayLimit bounds MAX_REPLAY_BYTES: a body that large is held in
// memory per call, and replaying more is better done by the caller.
const maxReplayLimit = 64 << 20

func (c *Config) check() error {
	switch c.AccessLog {
	case "all", "sampled", "off":
	default:
		return fmt.Errorf("ACCESS_LOG: unknown mode %q (want all, sampled or off)", c.AccessLog)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL: unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return fmt.Errorf("LOG_FORMAT: unknown format %q (want json or console)", c.LogFormat)
	}
	if err := CheckAdminToken(c.AdminToken); err != nil {
		return fmt.Errorf("ADMIN_TOKEN: %w", err)
	}
	if c.MaxReplayBytes < 0 || c.MaxReplayBytes > maxReplayLimit {
		return fmt.Errorf("MAX_REPLAY_BYTES: must be between 0 and %d (64 MiB), got %d", int64(maxReplayLimit), c.MaxReplayBytes)
	}
	if c.ReplayBudgetBytes < c.MaxReplayBytes {
		return fmt.Errorf("REPLAY_BUDGET_BYTES: must be at least MAX_REPLAY_BYTES (%d), got %d", c.MaxReplayBytes, c.ReplayBudgetBytes)
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"UPSTREAM_TIMEOUT", c.UpstreamTimeout}, {"TOKEN_TIMEOUT", c.TokenTimeout},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"REFRESH_MARGIN", c.RefreshMargin},
		{"BODY_IDLE_TIMEOUT", c.BodyIdleTimeout}, {"STORE_TIMEOUT", c.StoreTimeout},
	} {
		if d.value <= 0 {
			return fmt.Errorf("%s: must be a positive duration such as 10s, got %s", d.name, d.value)
		}
	}
	if c.ShutdownDelay < 0 {
		return fmt.Errorf("SHUTDOWN_DELAY: must not be negative, got %s", c.ShutdownDelay)
	}
	if c.ListenAddr == "" {
		return errors.New("LISTEN_ADDR: must not be empty")
	}
	switch c.RedisMode {
	case "single", "sentinel", "cluster":
	default:
		return fmt.Errorf("REDIS_MODE: unknown mode %q (want single, sentinel or cluster)", c.RedisMode)
	}
	if c.RedisURL != "" && c.TokenStorePath != "" {
		return errors.New("TOKEN_STORE_PATH: is for a single instance; with REDIS_URL set too, the store is ambiguous: set one of them")
	}
	if c.TokenStorePath != "" && c.TokenEncryptionKey == "" {
		return errors.New("TOKEN_ENCRYPTION_KEY: is required when TOKEN_STORE_PATH is set, so no token reaches the file in clear; make one with: openssl rand -base64 32")
	}
	if c.RedisURL != "" && c.TokenEncryptionKey == "" {
		return errors.New("TOKEN_ENCRYPTION_KEY: is required when REDIS_URL is set, so no token reaches Redis in clear; make one with: openssl rand -base64 32")
	}
	// Checked whenever given, store or not: a key that is not one would
	// otherwise be found out only on the day a store is added.
	if c.TokenEncryptionKey == "" && c.TokenEncryptionKeyPrevious != "" {
		return errors.New("TOKEN_ENCRYPTION_KEY_PREVIOUS: is set without TOKEN_ENCRYPTION_KEY; the previous key only opens what it sealed, the current one seals")
	}
	if c.TokenEncryptionKey != "" {
		if _, _, err := c.Keys(); err != nil {
			return err
		}
	}
	return nil
}

// Keys decodes TOKEN_ENCRYPTION_KEY and TOKEN_ENCRYPTION_KEY_PREVIOUS.
func (c *Config) Keys() (current []byte, previous [][]byte, err error) {
	if current, err = cache.ParseKey(c.TokenEncryptionKey); err != nil {
		return nil, nil, fmt.Errorf("TOKEN_ENCRYPTION_KEY: %w", err)
	}
	if c.TokenEncryptionKeyPrevious != "" {
		prev, err := cache.ParseKey(c.TokenEncryptionKeyPrevious)
		if err != nil {
			return nil, nil, fmt.Errorf("TOKEN_ENCRYPTION_KEY_PREVIOUS: %w", err)
		}
		previous = append(previous, prev)
	}
	return current, previous, nil
}

// parse runs env and rewrites its errors, which name Go fields, to name the
// variables.
func parse(v any, opts env.Options) error {
	err := env.ParseWithOptions(v, opts)
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			msgs = append(msgs, fmt.Sprintf("%s: %v", variableOf(v, pe.Name, opts.Prefix), pe.Err))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

// variableOf is the variable behind the Go field called field of *v.
func variableOf(v any, field, prefix string) string {
	if f, ok := reflect.TypeOf(v).Elem().FieldByName(field); ok {
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			return prefix + key
		}
	}
	return prefix + field
}
