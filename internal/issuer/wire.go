package issuer

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

// JSONParams reads a token request that must be a JSON object of strings.
func JSONParams(r *http.Request) (map[string]string, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("the body must be JSON (Content-Type application/json), got %q", r.Header.Get("Content-Type"))
	}
	var m map[string]string
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&m); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object of strings")
	}
	return m, nil
}

// FormParams reads a token request that must be form-encoded.
func FormParams(r *http.Request) (url.Values, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("the body must be form-encoded, got Content-Type %q", r.Header.Get("Content-Type"))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	return url.ParseQuery(string(b))
}

// BasicClient reads RFC 6749 2.3.1 client credentials from a Basic header.
func BasicClient(r *http.Request) (id, secret string, ok bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", "", false
	}
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	return id, secret, err1 == nil && err2 == nil
}

// Bearer is the token of an Authorization: Bearer header.
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return h[7:]
	}
	return ""
}

// Echo is what every fake vendor's API answers to an authorized call: the
// request as it arrived, so tests can check what the sidecar sent.
type Echo struct {
	Vendor     string      `json:"vendor"`
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	RawPath    string      `json:"raw_path"`
	RequestURI string      `json:"request_uri"`
	Query      string      `json:"query"`
	Header     http.Header `json:"header"`
	BodyLen    int64       `json:"body_len"`
	BodySHA256 string      `json:"body_sha256"`
	// User is whose token the call carried, when the vendor knows users.
	User string `json:"user,omitempty"`
}

// WriteEcho answers r with its Echo.
func WriteEcho(w http.ResponseWriter, r *http.Request, vendor string) { WriteEchoFor(w, r, vendor, "") }

// WriteEchoFor answers r with its Echo, saying it carried user's token.
func WriteEchoFor(w http.ResponseWriter, r *http.Request, vendor, user string) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	WriteJSON(w, http.StatusOK, Echo{
		Vendor: vendor, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath,
		RequestURI: r.RequestURI, Query: r.URL.RawQuery, Header: r.Header,
		BodyLen: n, BodySHA256: hex.EncodeToString(h.Sum(nil)), User: user,
	})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
