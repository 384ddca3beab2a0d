package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/authsidecar/authsidecar/internal/clock"
	"go.uber.org/zap"
)

// BodyFormat is how a token request's members are encoded.
type BodyFormat int

const (
	// FormBody is application/x-www-form-urlencoded, as RFC 6749 says.
	FormBody BodyFormat = iota
	// JSONBody is a JSON object of strings, as viewneo and movingimage want.
	JSONBody
)

// parseBodyFormat reads the TOKEN_BODY setting.
func parseBodyFormat(s string) (BodyFormat, error) {
	switch s {
	case "form":
		return FormBody, nil
	case "json":
		return JSONBody, nil
	}
	return 0, fmt.Errorf("unknown token body format %q (want form or json)", s)
}

// Endpoint speaks one vendor's dialect of token requests.
type Endpoint struct {
	// Auth authenticates the client; nil sends no client credentials.
	Auth   ClientAuth
	Body   BodyFormat
	Fields Fields
	// Client sends the requests; its timeout is not relied on, the
	// context's is. It is the route's own: mutual TLS needs one per route.
	Client *http.Client
	// Clock is what expiries are computed from.
	Clock clock.Clock
	// Log, at debug level, shows failed answers with secrets removed.
	Log *zap.Logger
}

// TokenRequest is one call to a token endpoint.
type TokenRequest struct {
	URL string
	// Params go in the body, encoded as the endpoint's Body says.
	Params url.Values
	// Query is added to URL's query string, for vendors that want a member
	// there (Veem's refresh token).
	Query url.Values
	// NoClientAuth leaves the client credentials out of this request, for a
	// login that authenticates by username and password alone.
	NoClientAuth bool
}

// Do sends req and parses the answer.
func (e *Endpoint) Do(ctx context.Context, req TokenRequest) (Token, error) {
	ans, sent, err := e.send(ctx, req)
	if err != nil {
		return Token{}, err
	}
	fields := e.Fields
	if fields.AccessToken == "" {
		fields = standardFields
	}
	tok, err := parseTokenResponse(ans.status, ans.contentType, ans.body, fields, e.Clock.Now())
	if err != nil {
		e.debugFailure(req.URL, ans, sent, err)
		return Token{}, fmt.Errorf("token endpoint %s: %w", safeURL(req.URL), err)
	}
	return tok, nil
}

// answer is a token endpoint's answer, read through a size limit.
type answer struct {
	status      int
	contentType string
	body        []byte
}

// send sends req in the endpoint's dialect and reads the answer. sent lists
// the values it carried that may be secret, for redacting debug lines.
func (e *Endpoint) send(ctx context.Context, req TokenRequest) (ans answer, sent []string, err error) {
	target, err := url.Parse(req.URL)
	if err != nil {
		return answer{}, nil, fmt.Errorf("parsing token URL: %w", errors.Unwrap(err))
	}
	if len(req.Query) > 0 {
		q := target.Query()
		for k, vs := range req.Query {
			q[k] = vs
		}
		target.RawQuery = q.Encode()
	}

	params := url.Values{}
	for k, vs := range req.Params {
		params[k] = vs
	}
	header := http.Header{}
	header.Set("Accept", "application/json")
	if !req.NoClientAuth && e.Auth != nil {
		if err := e.Auth.Authenticate(ctx, req.URL, header, params); err != nil {
			return answer{}, nil, fmt.Errorf("authenticating the client to %s: %w", safeURL(req.URL), err)
		}
	}

	var body []byte
	var contentType string
	switch e.Body {
	case JSONBody:
		m := make(map[string]string, len(params))
		for k := range params {
			m[k] = params.Get(k)
		}
		body, err = json.Marshal(m)
		if err != nil {
			return answer{}, nil, fmt.Errorf("encoding token request: %w", err)
		}
		contentType = "application/json"
	default:
		body = []byte(params.Encode())
		contentType = "application/x-www-form-urlencoded"
	}

	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return answer{}, nil, fmt.Errorf("building token request to %s: %w", safeURL(req.URL), errors.Unwrap(err))
	}
	httpReq.Header = header
	httpReq.Header.Set("Content-Type", contentType)

	ans, err = roundTrip(e.Client, httpReq, "token endpoint", req.URL)
	return ans, sentSecrets(params, header), err
}

// roundTrip sends req to an auth endpoint (what names it in errors) and
// reads its answer through a size limit. Errors name the endpoint by
// safeURL: *url.Error would repeat the URL, query and all.
func roundTrip(client *http.Client, req *http.Request, what, rawURL string) (answer, error) {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return answer{}, fmt.Errorf("calling %s %s: %w", what, safeURL(rawURL), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return answer{}, fmt.Errorf("reading answer of %s %s: %w", what, safeURL(rawURL), err)
	}
	if len(raw) > maxAnswerBytes {
		return answer{}, fmt.Errorf("%s %s answered more than %d bytes", what, safeURL(rawURL), maxAnswerBytes)
	}
	return answer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: raw}, nil
}
