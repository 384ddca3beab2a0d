// Package logtest captures a zap logger's JSON lines for tests that read
// what was logged (secret greps, "the call was replayed").
package logtest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Buffer is a concurrency-safe log sink.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// New returns a debug-level JSON logger writing to a new Buffer.
func New() (*zap.Logger, *Buffer) {
	b := &Buffer{}
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), b, zapcore.DebugLevel)), b
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Sync implements zapcore.WriteSyncer.
func (b *Buffer) Sync() error { return nil }

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits, bounded, for a line containing want. A handler's log line
// may be written just after its caller has the whole answer.
func (b *Buffer) WaitFor(t testing.TB, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(b.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %s in:\n%s", want, b.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}
