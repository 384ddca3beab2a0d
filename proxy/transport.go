package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/authsidecar/authsidecar/auth"
)

// TokenSource is what the proxy needs of a route's keeper.
type TokenSource interface {
	Token(ctx context.Context) (auth.Token, error)
	// Invalidate drops accessToken if it is still the one held for the
	// call ctx belongs to.
	Invalidate(ctx context.Context, accessToken string)
}

// Injection says where the token goes on the way out.
type Injection struct {
	// QueryParam, when set, carries the token in the query string (Viadeo);
	// otherwise it goes in "Authorization: Bearer".
	QueryParam string
}

func (in Injection) apply(req *http.Request, accessToken string) {
	if in.QueryParam == "" {
		req.Header.Set("Authorization", "Bearer "+accessToken)
		return
	}
	q := withoutQueryParam(req.URL.RawQuery, in.QueryParam)
	param := url.QueryEscape(in.QueryParam) + "=" + url.QueryEscape(accessToken)
	if q == "" {
		req.URL.RawQuery = param
	} else {
		req.URL.RawQuery = q + "&" + param
	}
}

// tokenTransport adds the route's token to each request and, when the
// upstream answers 401, invalidates it, gets a fresh one and sends the
// request once more. Only bodies up to the pool's limit are replayed.
type tokenTransport struct {
	route  string
	tokens TokenSource
	inject Injection
	base   http.RoundTripper
	pool   *bufferPool
	// refused recognizes refusals of the token that are not 401s.
	refused func(status int, head []byte) bool
	limiter Limiter // nil: none
	// tracer, when set, traces each attempt; see trace.go.
	tracer       trace.Tracer
	propagator   propagation.TextMapPropagator
	forwardTrace bool
}

// tokenError is a failure to get a token, on its way to the ErrorHandler.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// bodyError is a failure to read the caller's request body.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "reading request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	call := callFrom(ctx)
	account, _ := AccountFrom(ctx)
	if t.limiter != nil {
		if err := t.limiter.Admit(ctx, account); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
	}

	// Keep the body for a replay when it is small enough; a body whose
	// declared length is over the limit is not even looked at.
	var kept *replayBuffer
	body := req.Body
	if body != nil && body != http.NoBody && req.ContentLength <= t.pool.max {
		var err error
		kept, body, err = t.pool.bufferBody(req.Body, req.ContentLength)
		if err != nil {
			return nil, &bodyError{err}
		}
		if kept != nil {
			defer kept.release()
		}
	}
	replayable := body == nil || body == http.NoBody || kept != nil

	tok, err := t.tokens.Token(ctx)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return nil, &tokenError{err}
	}
	resp, err := t.attempt(req, tok.AccessToken, kept, body)
	if err == nil && call != nil {
		call.upstreamStatus = resp.StatusCode
	}
	if err != nil || !t.tokenRefused(resp) {
		return scrubbed(resp, tok.AccessToken), err
	}

	// 401: the token we sent is no good, whatever its expiry said.
	t.tokens.Invalidate(req.Context(), tok.AccessToken)
	if !replayable {
		// The body has been streamed away; this caller gets the 401, the
		// next gets a fresh token.
		if call != nil {
			call.replay = replayNotReplayable
		}
		return scrubbed(resp, tok.AccessToken), nil
	}
	fresh, err := t.tokens.Token(ctx)
	if err != nil {
		drain(resp.Body)
		if call != nil {
			call.replay = replayTokenError
		}
		return nil, &tokenError{err}
	}
	if fresh.AccessToken == tok.AccessToken {
		// A token that cannot be renewed (a static one): sending it again
		// would get the same answer.
		if call != nil {
			call.replay = replayNoNewToken
		}
		return scrubbed(resp, tok.AccessToken), nil
	}
	drain(resp.Body)
	if call != nil {
		call.replay = replayDone
	}
	resp, err = t.attempt(req, fresh.AccessToken, kept, nil)
	if err == nil && call != nil {
		call.upstreamStatus = resp.StatusCode
	}
	return scrubbed(resp, fresh.AccessToken), err
}

// refusalPeekBytes bounds how much of an answer is read to recognize a
// refusal that is not a 401.
const refusalPeekBytes = 4 << 10

// tokenRefused reports whether resp refuses the token: a 401, or what the
// route's preset recognizes in a small JSON answer. A peeked body is put
// back in front of the rest, so the caller gets every byte.
func (t *tokenTransport) tokenRefused(resp *http.Response) bool {
	if resp.StatusCode == http.StatusUnauthorized {
		return true
	}
	// Only an answer whose declared length is small is peeked at: one of
	// unknown length may be a stream whose first byte is seconds away.
	if t.refused == nil || !strings.Contains(resp.Header.Get("Content-Type"), "json") ||
		resp.ContentLength < 0 || resp.ContentLength > refusalPeekBytes {
		return false
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, refusalPeekBytes+1))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil || len(head) > refusalPeekBytes {
		return false
	}
	return t.refused(resp.StatusCode, head)
}

// attempt sends req carrying accessToken, its body a new reader over kept
// when the body was kept, else streamed. req is the outbound request
// ReverseProxy built, not the caller's: it is sent as it is, not cloned
// again — every attempt sets the token, the body and the trace headers
// anew, and a replay is sent only after the first answer's body is closed.
func (t *tokenTransport) attempt(req *http.Request, accessToken string, kept *replayBuffer, streamed io.ReadCloser) (*http.Response, error) {
	ctx, span := t.upstreamSpan(req)
	out := req
	if span != nil {
		out = req.WithContext(ctx)
	}
	switch {
	case kept != nil:
		out.Body = kept.reader()
		out.ContentLength = int64(kept.buf.Len())
		out.GetBody = func() (io.ReadCloser, error) { return kept.reader(), nil }
		if len(req.Trailer) > 0 {
			// Trailers travel only after a chunked body.
			out.ContentLength = -1
		}
	case streamed != nil:
		out.Body = streamed
		out.GetBody = nil
	}
	t.inject.apply(out, accessToken)
	t.propagate(ctx, out)
	resp, err := t.base.RoundTrip(out)
	endUpstreamSpan(span, resp, err)
	if err != nil {
		return nil, withoutSecret(upstreamError(err), accessToken)
	}
	if t.limiter != nil {
		account, _ := AccountFrom(req.Context())
		t.limiter.Answered(req.Context(), account, resp)
	}
	return resp, nil
}

// scrubbed removes the token from every header of an answer on its way to
// the caller: an upstream redirect's Location (or Content-Location, Refresh,
// Link) repeats the query the token was injected into.
func scrubbed(resp *http.Response, accessToken string) *http.Response {
	if resp == nil || accessToken == "" {
		return resp
	}
	forms, n := secretForms(accessToken)
	for name, values := range resp.Header {
		for i, v := range values {
			for _, f := range forms[:n] {
				if strings.Contains(v, f) {
					v = strings.ReplaceAll(v, f, "REDACTED")
					resp.Header[name][i] = v
				}
			}
		}
	}
	return resp
}

// secretForms are the ways a token can appear in text — as it is, and
// escaped for a query or a path — the first n of forms, each once. An
// array, not a slice: every answer is scrubbed, and this allocates nothing
// for a token that needs no escaping.
func secretForms(secret string) (forms [3]string, n int) {
	for _, f := range [3]string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		if !slices.Contains(forms[:n], f) {
			forms[n] = f
			n++
		}
	}
	return forms, n
}

// redactedError is an error whose text had a secret removed; errors.Is and
// As still see the original.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// withoutSecret keeps a secret out of an error's text: a broken upstream's
// answer, quoted by net/http, may repeat the request line and its query.
func withoutSecret(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	text := err.Error()
	forms, n := secretForms(secret)
	for _, f := range forms[:n] {
		text = strings.ReplaceAll(text, f, "REDACTED")
	}
	if text == err.Error() {
		return err
	}
	return &redactedError{text: text, err: err}
}

// upstreamError drops the URL that *url.Error repeats: in query injection it
// carries the token.
func upstreamError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("calling upstream: %w", ue.Err)
	}
	return fmt.Errorf("calling upstream: %w", err)
}

// drain reads a little of a body we are discarding, so its connection can be
// reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 4<<10)
	body.Close()
}
