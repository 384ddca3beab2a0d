package emulators

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// jsonParams reads a token request that must be a JSON object of strings.
func jsonParams(r *http.Request) (map[string]string, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("the body must be JSON (Content-Type application/json), got %q", r.Header.Get("Content-Type"))
	}
	var m map[string]string
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&m); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object of strings")
	}
	return m, nil
}

// formParams reads a token request that must be form-encoded.
func formParams(r *http.Request) (url.Values, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("the body must be form-encoded, got Content-Type %q", r.Header.Get("Content-Type"))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	return url.ParseQuery(string(b))
}

// basicClient reads RFC 6749 2.3.1 client credentials from a Basic header.
func basicClient(r *http.Request) (id, secret string, ok bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", "", false
	}
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	return id, secret, err1 == nil && err2 == nil
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return h[7:]
	}
	return ""
}

// Echo is what every emulator's API answers to an authorized call: the
// request as it arrived, so tests can check what the sidecar sent.
type Echo struct {
	Vendor     string      `json:"vendor"`
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	Query      string      `json:"query"`
	Header     http.Header `json:"header"`
	BodyLen    int64       `json:"body_len"`
	BodySHA256 string      `json:"body_sha256"`
}

func echo(w http.ResponseWriter, r *http.Request, vendor string) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	writeJSON(w, http.StatusOK, Echo{
		Vendor: vendor, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header,
		BodyLen: n, BodySHA256: hex.EncodeToString(h.Sum(nil)),
	})
}
