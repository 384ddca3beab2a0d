package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

type countingReader struct {
	r    io.Reader
	read int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return nil }

// Memory stays bounded whatever the body size: at most the limit (plus one
// byte, to notice the overflow) is held before streaming starts.
func TestBufferBodyReadsAtMostTheLimit(t *testing.T) {
	const limit = 64 << 10
	payload := make([]byte, 10<<20)
	rand.Read(payload)
	src := &countingReader{r: bytes.NewReader(payload)}
	pool := newBufferPool(limit, 1<<30)

	kept, streamed, err := pool.bufferBody(src, -1)
	if err != nil {
		t.Fatal(err)
	}
	if kept != nil {
		t.Fatal("a body over the limit was kept for replay")
	}
	if src.read > limit+1 {
		t.Fatalf("read %d bytes before streaming, limit %d", src.read, limit)
	}
	got, err := io.ReadAll(streamed)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("streamed body differs (%d bytes, %v)", len(got), err)
	}
	streamed.Close()
}

func TestReplayBufferReturnsToPoolOnlyWhenAllReadersClosed(t *testing.T) {
	pool := newBufferPool(1<<10, 1<<30)
	kept, _, err := pool.bufferBody(io.NopCloser(bytes.NewReader([]byte("hello"))), -1)
	if err != nil || kept == nil {
		t.Fatalf("small body not kept: %v", err)
	}
	first := kept.reader()
	second := kept.reader()
	kept.release() // the round trip is over, but readers are open
	first.Close()
	first.Close() // closing twice must not release twice
	if kept.refs.Load() != 1 {
		t.Fatalf("refs = %d, want 1 (the second reader)", kept.refs.Load())
	}
	b, _ := io.ReadAll(second)
	if string(b) != "hello" {
		t.Fatalf("reader saw %q while the buffer should be ours", b)
	}
	second.Close()
	if kept.refs.Load() != 0 {
		t.Fatalf("refs = %d after every reader closed", kept.refs.Load())
	}
}
