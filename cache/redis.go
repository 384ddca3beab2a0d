package cache

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Redis is a Store on a Redis server (single, Sentinel or Cluster), shared by
// every replica. It stores what it is given: wrap it in Sealed so no secret
// reaches Redis in clear.
type Redis struct {
	current atomic.Pointer[redisClient] // replaced whole by Reconnect
	prefix  string
}

type redisClient struct{ redis.UniversalClient }

// NewRedis returns a Store on client whose keys all start with prefix.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	r := &Redis{prefix: prefix}
	r.current.Store(&redisClient{client})
	return r
}

func (r *Redis) client() redis.UniversalClient { return r.current.Load().UniversalClient }

// retiredClientGrace is how long a replaced client stays open, so that
// operations already under way on it (a lock held across a refresh, bounded
// by TOKEN_TIMEOUT) finish rather than fail.
const retiredClientGrace = time.Minute

// Reconnect moves the store to client (a new REDIS_URL) once client answers
// a PING; until then, and if it never does, the current server stays in use.
// The replaced client is closed after a grace period.
func (r *Redis) Reconnect(ctx context.Context, client redis.UniversalClient) error {
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return fmt.Errorf("redis PING on the new server: %w", err)
	}
	old := r.current.Swap(&redisClient{client})
	time.AfterFunc(retiredClientGrace, func() { _ = old.Close() })
	return nil
}

// Redis modes for OpenRedis.
const (
	RedisSingle   = "single"
	RedisSentinel = "sentinel"
	RedisCluster  = "cluster"
)

// OpenRedis connects to the Redis rawURL describes:
//   - single:   redis://[user:password@]host:port[/db], or rediss:// for TLS
//   - sentinel: redis://[:password@]sentinel:26379[/db]?master_name=mymaster
//     (more sentinels with &addr=host:port)
//   - cluster:  redis://[user:password@]node:6379?addr=node2:6379&addr=node3:6379
//
// The connection is made lazily; errors never repeat the URL, which may
// hold a password.
func OpenRedis(rawURL, mode string) (redis.UniversalClient, error) {
	switch mode {
	case "", RedisSingle:
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, redisURLError(err)
		}
		opts.ContextTimeoutEnabled = true // the store's deadlines reach the wire
		return redis.NewClient(opts), nil
	case RedisSentinel:
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, redisURLError(err)
		}
		if opts.MasterName == "" {
			return nil, errors.New("a Sentinel URL needs ?master_name=NAME")
		}
		opts.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(opts), nil
	case RedisCluster:
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, redisURLError(err)
		}
		opts.ContextTimeoutEnabled = true
		return redis.NewClusterClient(opts), nil
	}
	return nil, fmt.Errorf("unknown Redis mode %q (want single, sentinel or cluster)", mode)
}

// redisURLError keeps a parse error's reason but not the URL it quotes.
func redisURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("not a valid URL: %w", ue.Err)
	}
	return err
}

func (r *Redis) key(k string) string { return r.prefix + k }

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := r.client().Get(ctx, r.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis GET: %w", err)
	}
	return v, nil
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return errors.New("cache: negative ttl")
	}
	if err := r.client().Set(ctx, r.key(key), value, ttl).Err(); err != nil {
		return fmt.Errorf("redis SET: %w", err)
	}
	return nil
}

// deleteIfEquals is compare-and-delete in one step on the server, the
// standard release script for a Redis lock.
var deleteIfEquals = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// CompareAndDelete implements Store.
func (r *Redis) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	n, err := deleteIfEquals.Run(ctx, r.client(), []string{r.key(key)}, old).Int()
	if err != nil {
		return false, fmt.Errorf("redis compare-and-delete: %w", err)
	}
	return n == 1, nil
}

// TryLock implements Store with SET NX PX.
func (r *Redis) TryLock(ctx context.Context, key, owner string, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("cache: lock ttl must be positive")
	}
	ok, err := r.client().SetNX(ctx, r.key(key), owner, ttl).Result()
	if err != nil {
		return fmt.Errorf("redis SET NX: %w", err)
	}
	if !ok {
		return ErrLocked
	}
	return nil
}

// Unlock implements Store: only the owner's lock is deleted.
func (r *Redis) Unlock(ctx context.Context, key, owner string) (bool, error) {
	return r.CompareAndDelete(ctx, key, []byte(owner))
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client().Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis PING: %w", err)
	}
	return nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client().Close() }

// LogRedisTo sends go-redis's own messages (dial failures, pool trouble) to
// log, so a JSON log stays JSON. go-redis has one logger per process.
func LogRedisTo(log *zap.Logger) { redis.SetLogger(redisLogger{log.Sugar()}) }

type redisLogger struct{ log *zap.SugaredLogger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warnf(format, v...)
}
