package proxy

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// bufferPool recycles the buffers that keep request bodies for replay, and
// bounds the memory they hold across all calls: past the budget, a body is
// streamed and not replayed, so concurrent uploads cannot exhaust memory.
type bufferPool struct {
	pool   sync.Pool
	max    int64
	budget int64
	inUse  atomic.Int64
}

func newBufferPool(max, budget int64) *bufferPool {
	return &bufferPool{max: max, budget: budget, pool: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

// reserve takes n bytes of the budget, or reports that they are not there.
func (p *bufferPool) reserve(n int64) bool {
	if p.inUse.Add(n) > p.budget {
		p.inUse.Add(-n)
		return false
	}
	return true
}

func (p *bufferPool) get() *bytes.Buffer { return p.pool.Get().(*bytes.Buffer) }

func (p *bufferPool) put(b *bytes.Buffer) {
	// A buffer grown far beyond the limit (it cannot, but a future change
	// might) would pin memory in the pool.
	if int64(b.Cap()) > 2*p.max+bytes.MinRead {
		return
	}
	b.Reset()
	p.pool.Put(b)
}

// replayBuffer is a request body kept in memory so it can be sent twice. The
// transport may still be writing an attempt's body after RoundTrip returns
// (an upstream can answer 401 before reading the body), so the buffer goes
// back to the pool only when every reader was closed and the round trip is
// over: reference counting, one reference per reader plus the round trip's.
type replayBuffer struct {
	pool     *bufferPool
	buf      *bytes.Buffer
	refs     atomic.Int32
	reserved int64 // bytes of the pool's budget this buffer holds
}

func (b *replayBuffer) release() {
	if b.refs.Add(-1) == 0 {
		b.pool.put(b.buf)
		b.pool.inUse.Add(-b.reserved)
	}
}

// reader returns a new reader over the whole body; closing it releases it.
func (b *replayBuffer) reader() io.ReadCloser {
	b.refs.Add(1)
	return &bufferReader{Reader: bytes.NewReader(b.buf.Bytes()), owner: b}
}

type bufferReader struct {
	*bytes.Reader
	owner  *replayBuffer
	closed atomic.Bool
}

func (r *bufferReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.owner.release()
	}
	return nil
}

// overflowBody is a body longer than the replay limit: the bytes already read
// followed by the rest, streamed. Closing it closes the caller's body and
// releases the buffer.
type overflowBody struct {
	io.Reader
	head   *bufferReader
	rest   io.Closer
	closed atomic.Bool
}

func (o *overflowBody) Close() error {
	if !o.closed.CompareAndSwap(false, true) {
		return nil
	}
	o.head.Close()
	return o.rest.Close()
}

// bufferBody reads up to the pool's limit of body, whose declared length is
// declared (-1: unknown). It returns a replayBuffer holding the whole body
// when it fits, or nil and a body that streams the read part and the rest
// when it does not, or the body untouched when the budget is spent. The
// returned buffer holds one reference for the caller, who must release it
// when the round trip is over.
func (p *bufferPool) bufferBody(body io.ReadCloser, declared int64) (*replayBuffer, io.ReadCloser, error) {
	want := p.max + 1 // reading one byte past the limit tells an overflow
	if declared >= 0 && declared < want {
		want = declared
	}
	if !p.reserve(want) {
		return nil, body, nil
	}
	rb := &replayBuffer{pool: p, buf: p.get(), reserved: want}
	rb.refs.Store(1)
	n, err := rb.buf.ReadFrom(io.LimitReader(body, p.max+1))
	if err != nil {
		rb.release()
		return nil, nil, err
	}
	if n <= p.max {
		body.Close()
		return rb, nil, nil
	}
	head := rb.reader().(*bufferReader)
	rb.release() // the overflow body's reference is enough
	return nil, &overflowBody{Reader: io.MultiReader(head, body), head: head, rest: body}, nil
}
