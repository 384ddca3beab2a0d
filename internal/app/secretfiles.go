package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/filestamp"
	"github.com/authsidecar/authsidecar/internal/route"
)

// Secret files (X_FILE) are watched: Kubernetes swaps a Secret volume's
// ..data link, editors rename. A change takes effect without a restart —
// the route is rebuilt and swapped in, and keeps its stored token (the key
// does not depend on secrets), so the next token request uses the new
// client secret or password and a new static token is served from the next
// call; a new CLIENT_KEYS or ADMIN_TOKEN applies to the next call; a new
// TOKEN_ENCRYPTION_KEY seals from then on while the previous one still
// opens, a new _PREVIOUS opens too; a new REDIS_URL is used once it
// answers. A file that disappears or does not read keeps the last good
// value, is logged, and shows on /readyz?verbose and a metric.

// secretFileCheckEvery is how often the files are looked at: a stat each.
const secretFileCheckEvery = time.Second

type secretFiles struct {
	mu     sync.Mutex
	stamps map[string]string // by variable: size, time and device of what was read
	errs   map[string]string // by variable: why the file does not read now
	warm   map[string]context.CancelFunc
}

// watchSecretFiles looks at the secret files every interval until ctx ends.
func (a *App) watchSecretFiles(ctx context.Context, every time.Duration) {
	if len(a.cfg.SecretFiles) == 0 {
		return
	}
	a.files.mu.Lock()
	a.files.stamps, a.files.errs = map[string]string{}, map[string]string{}
	for _, f := range a.cfg.SecretFiles {
		a.files.stamps[f.Variable] = f.Stamp // as read at start
	}
	a.files.mu.Unlock()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, f := range a.cfg.SecretFiles {
			a.checkSecretFile(ctx, f)
		}
	}
}

func (a *App) checkSecretFile(ctx context.Context, f config.SecretFile) {
	stamp, err := filestamp.Of(f.Path)
	a.files.mu.Lock()
	unchanged := err == nil && stamp == a.files.stamps[f.Variable]
	a.files.mu.Unlock()
	if unchanged {
		return
	}
	rerr := err
	switch {
	case err != nil:
	case f.ReadByRoute:
		// The route reads it when it needs it; this only tells whether it
		// still can.
		rerr = config.CheckReadable(f)
	default:
		var value string
		if value, rerr = config.ReadSecretFile(f); rerr == nil {
			rerr = a.applySecret(ctx, f, value)
		}
	}
	a.files.mu.Lock()
	defer a.files.mu.Unlock()
	if rerr != nil {
		if a.files.errs[f.Variable] == "" {
			a.log.Warn("a secret file changed but cannot be used; keeping its last good value",
				zap.String("variable", f.Variable+"_FILE"), zap.Error(rerr))
			a.metrics.SecretFileError(f.Variable + "_FILE")
		}
		a.files.errs[f.Variable] = rerr.Error()
		return
	}
	delete(a.files.errs, f.Variable)
	a.files.stamps[f.Variable] = stamp
	a.log.Info("secret file changed; using its new value", zap.String("variable", f.Variable+"_FILE"))
}

// applySecret puts a secret's new value to use.
func (a *App) applySecret(ctx context.Context, f config.SecretFile, value string) error {
	if f.Route != "" {
		return a.rebuildRoute(ctx, f, value)
	}
	switch f.Setting {
	case "CLIENT_KEYS":
		keys, err := config.ClientKeys(strings.Split(value, ","), a.cfg.KeyRules)
		if err != nil {
			return fmt.Errorf("CLIENT_KEYS_FILE: %w", err)
		}
		a.handler.SetClientKeys(keys)
	case "ADMIN_TOKEN":
		if err := config.CheckAdminToken(value); err != nil {
			return fmt.Errorf("ADMIN_TOKEN_FILE: %w", err)
		}
		a.admin.Set(value)
	case "TOKEN_ENCRYPTION_KEY", "TOKEN_ENCRYPTION_KEY_PREVIOUS":
		if a.sealer == nil {
			return nil
		}
		key, err := cache.ParseKey(value)
		if err != nil {
			return fmt.Errorf("%s_FILE: %w", f.Variable, err)
		}
		if f.Setting == "TOKEN_ENCRYPTION_KEY_PREVIOUS" {
			return a.sealer.Accept(key)
		}
		return a.sealer.Rotate(key)
	case "REDIS_URL":
		return a.moveRedis(ctx, value)
	default:
		return fmt.Errorf("%s_FILE: a change takes effect at the next start", f.Variable)
	}
	return nil
}

// moveRedis moves the token store to a new REDIS_URL once the new server
// answers. The new server does not hold the fleet's tokens yet: the store
// check finds its data-loss marker missing and has every replica write its
// tokens back (newest wins) before any rotating refresh, as after a Redis
// restart.
func (a *App) moveRedis(ctx context.Context, rawURL string) error {
	if a.redis == nil {
		return errors.New("REDIS_URL_FILE: the sidecar started without Redis; a change of store takes effect at the next start")
	}
	client, err := cache.OpenRedis(rawURL, a.cfg.RedisMode)
	if err != nil {
		return fmt.Errorf("REDIS_URL_FILE: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	defer cancel()
	if err := a.redis.Reconnect(ctx, client); err != nil {
		return fmt.Errorf("REDIS_URL_FILE: %w", err)
	}
	return nil
}

// rebuildRoute builds the route with the secret's new value and swaps it in.
func (a *App) rebuildRoute(ctx context.Context, f config.SecretFile, value string) error {
	for i := range a.cfg.Routes {
		rc := a.cfg.Routes[i]
		if rc.Name != f.Route {
			continue
		}
		switch f.Setting {
		case "CLIENT_SECRET":
			rc.ClientSecret = value
		case "PASSWORD":
			rc.Password = value
		case "ACCESS_TOKEN":
			rc.AccessToken = value
		case "REFRESH_TOKEN":
			rc.RefreshToken = value
		}
		r, err := route.New(rc, a.deps)
		if err != nil {
			return err
		}
		a.cfg.Routes[i] = rc
		a.routes.Replace(r)
		a.files.mu.Lock()
		if stop := a.files.warm[rc.Name]; stop != nil {
			stop() // the old keeper's warming
		}
		if a.files.warm == nil {
			a.files.warm = map[string]context.CancelFunc{}
		}
		warmCtx, stop := context.WithCancel(ctx)
		a.files.warm[rc.Name] = stop
		a.files.mu.Unlock()
		go r.Keeper.KeepWarm(warmCtx, warmCheckEvery)
		return nil
	}
	return fmt.Errorf("no route %s", f.Route)
}

// secretFileErrors is what /readyz?verbose says of unreadable files.
func (a *App) secretFileErrors() map[string]string {
	a.files.mu.Lock()
	defer a.files.mu.Unlock()
	if len(a.files.errs) == 0 {
		return nil
	}
	out := map[string]string{}
	for v, e := range a.files.errs {
		out[v+"_FILE"] = e
	}
	return out
}
