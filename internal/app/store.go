package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/config"
)

// storeCheckEvery is how often a replica pings the shared store and looks
// for its marker: short, so a replica notices lost data well within the
// recovery window.
const storeCheckEvery = time.Second

// recoveryWindow is how long rotating refreshes wait after the store lost
// its data: long enough for every replica's next check to notice and write
// its token back.
const recoveryWindow = 3 * storeCheckEvery

// openedStore is the token store the configuration asks for, with the
// parts a changed secret file reaches.
type openedStore struct {
	store  cache.LockingStore
	kind   string        // "memory", "file" or "redis", for /readyz
	sealer *cache.Sealer // nil for the in-process store
	redis  *cache.Redis  // the Redis store under the sealing
}

// openStore opens the token store the configuration asks for: in-process,
// a sealed file for a single instance, or Redis with every value sealed.
func openStore(cfg *config.Config, now clock.Clock) (openedStore, error) {
	if cfg.RedisURL == "" && cfg.TokenStorePath == "" {
		return openedStore{store: cache.NewMemory(), kind: "memory"}, nil
	}
	current, previous, err := cfg.Keys()
	if err != nil {
		return openedStore{}, err
	}
	sealer, err := cache.NewSealer(current, previous...)
	if err != nil {
		return openedStore{}, fmt.Errorf("TOKEN_ENCRYPTION_KEY: %w", err)
	}
	if cfg.TokenStorePath != "" {
		f, err := cache.OpenFile(cfg.TokenStorePath, now)
		if err != nil {
			return openedStore{}, fmt.Errorf("TOKEN_STORE_PATH: %w", err)
		}
		return openedStore{store: cache.NewSealed(f, sealer), kind: "file", sealer: sealer}, nil
	}
	client, err := cache.OpenRedis(cfg.RedisURL, cfg.RedisMode)
	if err != nil {
		return openedStore{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	r := cache.NewRedis(client, cfg.RedisKeyPrefix)
	sealed := cache.NewSealed(r, sealer)
	return openedStore{store: cache.WithDeadline(sealed, cfg.StoreTimeout), kind: "redis", sealer: sealer, redis: r}, nil
}

// watchStore checks the shared store until ctx ends. It marks the store
// degraded while it does not answer (in time) and, when it answers again,
// writes every route's token back so siblings see it without waiting for the
// next refresh. It notices a store that lost its data, however briefly it
// was away, and starts the fleet's recovery.
func (a *App) watchStore(ctx context.Context, every time.Duration) {
	pinger, ok := a.store.(cache.Pinger)
	if !ok || a.storeKind != "redis" {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		// The store's own deadline (STORE_TIMEOUT) bounds the ping, so a
		// store too slow for callers is reported as such.
		err := pinger.Ping(ctx)
		if err == nil {
			if lost, merr := a.marker.Check(ctx); merr == nil && lost {
				a.recoverLostStore(ctx)
			}
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !a.storeDegraded.Swap(true):
			cause := "Redis does not answer"
			if errors.Is(err, cache.ErrSlow) {
				cause = fmt.Sprintf("Redis answers slower than STORE_TIMEOUT (%s)", a.cfg.StoreTimeout)
			}
			a.storeCause.Store(cause)
			a.metrics.StoreDegraded(true)
			a.log.Warn("token store degraded: "+cause+"; serving tokens from memory", zap.Error(err))
		case err == nil && a.storeDegraded.Swap(false):
			a.metrics.StoreDegraded(false)
			a.log.Info("token store back: writing tokens through again")
			for _, rt := range a.routes.All() {
				if err := rt.Keeper.Resync(ctx); err != nil {
					a.log.Warn("writing token back to the store failed", zap.String("route", rt.Name), zap.Error(err))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// storeLost is what a rotating refresh asks before it presents a refresh
// token: whether the store lost its data since this replica last looked,
// which its pings may not have noticed. Recovery starts when it did.
func (a *App) storeLost(ctx context.Context) bool {
	lost, err := a.marker.Check(ctx)
	if err != nil || !lost {
		return false
	}
	// The caller holds its route's lock; writing every route's token
	// back needs that lock, so it runs beside.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.TokenTimeout)
		defer cancel()
		a.recoverLostStore(ctx)
	}()
	return true
}

// recoverLostStore starts the fleet's recovery after the store lost its
// data: rotating refreshes wait while every held token is written back, the
// newest winning.
func (a *App) recoverLostStore(ctx context.Context) {
	a.log.Warn("the token store lost its data; writing held tokens back (the newest wins) before any rotating refresh")
	a.recovery.Begin()
	a.metrics.StoreDataLost()
	for _, rt := range a.routes.All() {
		if err := rt.Keeper.Resync(ctx); err != nil {
			a.log.Warn("writing token back to the store failed", zap.String("route", rt.Name), zap.Error(err))
		}
	}
}
