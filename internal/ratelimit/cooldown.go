package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/cache"
)

// Cool-downs: a vendor's request for a pause, kept in the shared store
// (so a replica that starts later sees it) and announced on Channel (so the
// others hold back at once).

// Channel is where cool-downs are announced to the fleet.
const Channel = "ratelimit:cooldowns"

// recheckEvery is how long a replica trusts what it last read of an
// account's cool-down without hearing of a new one: a bound on how long an
// announcement lost with a connection can go unnoticed.
const recheckEvery = 10 * time.Second

// maxTracked bounds the accounts a limiter remembers; beyond it, those whose
// cool-down and rate are idle are forgotten (and read again when called).
const maxTracked = 4096

type announcement struct {
	Route   string `json:"route"`
	Account string `json:"account,omitempty"`
	// Until is the cool-down's end, in Unix milliseconds.
	Until int64 `json:"until"`
}

func (l *Limiter) key(account string) string {
	return "ratelimit:cooldown:" + l.cfg.Route + ":" + account
}

// untilFor is when account's cool-down ends (the past when there is none):
// what this replica saw or heard, and what the store says when it has not
// asked it lately.
func (l *Limiter) untilFor(ctx context.Context, account string) time.Time {
	now := l.cfg.Clock.Now()
	l.mu.Lock()
	c, ok := l.until[account]
	l.mu.Unlock()
	if !l.sharedUp() || ok && now.Sub(c.checked) < recheckEvery {
		return c.end
	}
	end, err := l.stored(ctx, account)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		l.sharedFailed("pauses other replicas saw are not read", err)
		return c.end
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c = l.until[account]
	if end.After(c.end) {
		c.end = end
	}
	c.checked = now
	l.until[account] = c
	l.prune(now)
	return c.end
}

func (l *Limiter) stored(ctx context.Context, account string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.StoreTimeout)
	defer cancel()
	raw, err := l.cfg.Shared.Get(ctx, l.key(account))
	if err != nil {
		return time.Time{}, err
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return time.Time{}, cache.ErrNotFound
	}
	return time.UnixMilli(ms), nil
}

// prune forgets idle accounts once there are too many; l.mu is held.
func (l *Limiter) prune(now time.Time) {
	if len(l.until) > maxTracked {
		for a, c := range l.until {
			if !c.end.After(now) {
				delete(l.until, a)
			}
		}
	}
	if len(l.local) > maxTracked {
		for a, lim := range l.local {
			if lim.TokensAt(now) >= float64(lim.Burst()) {
				delete(l.local, a)
			}
		}
	}
}

// Answered implements proxy.Limiter: an answer that asks for a pause cools
// the account down, here at once and across the fleet.
func (l *Limiter) Answered(ctx context.Context, account string, resp *http.Response) {
	now := l.cfg.Clock.Now()
	pause, why := requestedPause(resp, now)
	if pause <= 0 {
		return
	}
	if pause > l.cfg.MaxCooldown {
		pause = l.cfg.MaxCooldown
	}
	end := now.Add(pause)
	l.heard(account, end)
	l.log.Warn("the vendor asked for a pause; calls are held back until it ends",
		zap.String("account", account), zap.Int("status", resp.StatusCode), zap.String("asked_by", why),
		zap.Duration("pause", pause))
	if l.cfg.Shared == nil {
		return
	}
	// Stored first, then announced: a replica that hears it, or starts
	// later, finds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.StoreTimeout)
	defer cancel()
	value := []byte(strconv.FormatInt(end.UnixMilli(), 10))
	msg, _ := json.Marshal(announcement{Route: l.cfg.Route, Account: account, Until: end.UnixMilli()})
	err := l.cfg.Shared.Set(ctx, l.key(account), value, pause)
	if err == nil {
		err = l.cfg.Shared.Publish(ctx, Channel, msg)
	}
	if err != nil {
		l.log.Warn("cool-down not shared with the fleet: the shared store failed", zap.Error(err))
	}
}

// heard records a cool-down, seen here or announced by a sibling.
func (l *Limiter) heard(account string, end time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.until[account]
	if end.After(c.end) {
		c.end = end
	}
	l.until[account] = c
}

// Cooldown is how long the route's longest cool-down this replica knows of
// has to run; zero when none.
func (l *Limiter) Cooldown() time.Duration {
	now := l.cfg.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var longest time.Duration
	for _, c := range l.until {
		longest = max(longest, c.end.Sub(now))
	}
	return longest
}

// Listen hands the fleet's cool-down announcements to the limiters of the
// routes they name, until ctx ends. subscribe is the shared store's
// (cache.Redis.Subscribe); limiters are every route's, by name. Each time
// the subscription is made again (a lost connection), the limiters read
// the store at their next call, for what was announced meanwhile.
func Listen(ctx context.Context, subscribe func(ctx context.Context, channel string, handle func([]byte), ready func()), limiters func() map[string]*Limiter) {
	subscribe(ctx, Channel, func(msg []byte) {
		var a announcement
		if json.Unmarshal(msg, &a) != nil {
			return
		}
		if l := limiters()[a.Route]; l != nil {
			l.heard(a.Account, time.UnixMilli(a.Until))
		}
	}, func() {
		for _, l := range limiters() {
			l.recheck()
		}
	})
}

// recheck makes every account read the store at its next call.
func (l *Limiter) recheck() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, c := range l.until {
		c.checked = time.Time{}
		l.until[a] = c
	}
}

// requestedPause is how long an answer asks callers to wait, and by what:
// a 429 or 503 with Retry-After (seconds, or an HTTP date), or a rate-limit
// header saying none remain until a reset.
func requestedPause(resp *http.Response, now time.Time) (time.Duration, string) {
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
			return d, "Retry-After"
		}
	}
	for _, h := range remainingHeaders {
		if strings.TrimSpace(firstValue(resp.Header, h.remaining)) != "0" {
			continue
		}
		if d, ok := resetIn(firstValue(resp.Header, h.reset), now); ok {
			return d, h.name
		}
	}
	return 0, ""
}

// remainingHeaders are the rate-limit header families vendors send, their
// keys made canonical once here: every answer is read for them, and
// building and canonicalising the names per answer was about 2% of the
// sidecar's CPU.
var remainingHeaders = func() []rateLimitHeaders {
	var hs []rateLimitHeaders
	for _, prefix := range []string{"X-RateLimit-", "RateLimit-", "X-Rate-Limit-"} {
		hs = append(hs, rateLimitHeaders{name: prefix + "Remaining",
			remaining: http.CanonicalHeaderKey(prefix + "Remaining"), reset: http.CanonicalHeaderKey(prefix + "Reset")})
	}
	return hs
}()

// rateLimitHeaders is one family: its name as logs give it, and its two
// keys, canonical.
type rateLimitHeaders struct{ name, remaining, reset string }

// firstValue is Header.Get for a key already canonical.
func firstValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// retryAfter reads Retry-After: delay-seconds or an HTTP date (RFC 9110
// §10.2.3).
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		return seconds(s)
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return t.Sub(now), t.After(now)
}

// resetIn reads a rate-limit reset: seconds from now, or — as GitHub and
// others send it — a Unix time.
func resetIn(v string, now time.Time) (time.Duration, bool) {
	s, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return 0, false
	}
	if s > 1e9 {
		s -= float64(now.UnixMilli()) / 1000
	}
	return seconds(s)
}

func seconds(s float64) (time.Duration, bool) {
	if s <= 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return 0, false
	}
	// Absurd values are capped by the route's MaxCooldown; this only keeps
	// the conversion from overflowing.
	return time.Duration(min(s, 1e9) * float64(time.Second)), true
}
