package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// What a fleet shares through Redis besides tokens and locks: a rate limit
// every replica counts against, and messages every replica hears at once.

// Allow counts one request against a limit of n per period (at most burst
// at once) that every replica shares — GCRA, by github.com/go-redis/redis_rate
// — and returns zero when it may go now, else how long until it may.
func (r *Redis) Allow(ctx context.Context, key string, n int, per time.Duration, burst int) (time.Duration, error) {
	res, err := redis_rate.NewLimiter(r.client()).Allow(ctx, r.key(key), redis_rate.Limit{Rate: n, Period: per, Burst: burst})
	if err != nil {
		return 0, fmt.Errorf("redis rate limit: %w", err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return res.RetryAfter, nil
}

// Publish tells every replica listening on channel.
func (r *Redis) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := r.client().Publish(ctx, r.key(channel), msg).Err(); err != nil {
		return fmt.Errorf("redis PUBLISH: %w", err)
	}
	return nil
}

// Subscribe calls handle with each message published on channel until ctx
// ends. ready, when set, is called each time the subscription is made —
// first, and again after the connection was lost or REDIS_URL changed — so
// the caller can catch up on what it may have missed meanwhile.
func (r *Redis) Subscribe(ctx context.Context, channel string, handle func([]byte), ready func()) {
	for ctx.Err() == nil {
		client := r.client()
		sub := client.Subscribe(ctx, r.key(channel))
		if _, err := sub.Receive(ctx); err == nil {
			if ready != nil {
				ready()
			}
			r.listen(ctx, sub.ChannelWithSubscriptions(), client, handle, ready)
		}
		_ = sub.Close()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// listen hands messages on until ctx ends, the subscription closes, or the
// store moved to another server. go-redis makes a subscription again by
// itself after a lost connection; what was published meanwhile is lost, so
// ready is called then too.
func (r *Redis) listen(ctx context.Context, messages <-chan any, client redis.UniversalClient, handle func([]byte), ready func()) {
	moved := time.NewTicker(time.Second)
	defer moved.Stop()
	for {
		select {
		case m, ok := <-messages:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				handle([]byte(m.Payload))
			case *redis.Subscription:
				if m.Kind == "subscribe" && ready != nil {
					ready()
				}
			}
		case <-moved.C:
			if r.client() != client {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}
