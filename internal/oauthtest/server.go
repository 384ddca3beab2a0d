// Package oauthtest is a strict OAuth2 server and protected API for tests:
// it refuses token requests not shaped as configured, so a client that
// drifts from its dialect fails its tests.
package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says how the server's token endpoint must be spoken to.
type Config struct {
	ClientID     string
	ClientSecret string
	// BasicAuth: client credentials in an HTTP Basic header (and nowhere
	// else); otherwise in the body (and no Authorization header).
	BasicAuth bool
	// JSONBody: token requests are JSON objects; otherwise form-encoded.
	JSONBody bool
	// Grants lists the grant types accepted.
	Grants   []string
	Username string
	Password string
	// Lifetime of access tokens; zero means an hour.
	Lifetime time.Duration
	// Rotate makes refresh tokens single-use: presenting one twice revokes
	// every token descended from the same grant (OAuth 2.0 Security BCP).
	Rotate bool
	// InitialRefreshToken is a refresh token the server accepts at start.
	InitialRefreshToken string
	// OmitExpiresIn leaves expires_in out of answers; ExpiresInAsString
	// sends it as a string.
	OmitExpiresIn     bool
	ExpiresInAsString bool
	// JWTAccessTokens issues access tokens that are JWTs with exp.
	JWTAccessTokens bool
	// QueryToken: the API takes the token as the access_token query
	// parameter instead of a Bearer header.
	QueryToken bool
	// Now is the server's clock; nil means time.Now.
	Now func() time.Time
}

// Mode changes how the token endpoint misbehaves.
type Mode int

const (
	Normal Mode = iota
	Down        // 503 with an HTML page, as a gateway would
	HTML        // 200 with an HTML page
	Slow        // waits for Release before answering
)

// Server is a running fake.
type Server struct {
	*httptest.Server
	cfg Config

	mu            sync.Mutex
	mode          Mode
	release       chan struct{}
	held          atomic.Int32 // requests Slow mode has held
	access        map[string]accessToken
	refresh       map[string]refreshToken
	revokedFamily map[string]bool
	// Counters.
	tokenCalls      map[string]int // by grant
	badRequests     []string       // why each refused request was refused
	invalidGrants   int
	apiCalls        int
	unauthenticated int
	// API401 makes the API answer 401 to every call.
	api401 bool
}

type accessToken struct {
	expires time.Time
	family  string
}

type refreshToken struct {
	family string
	used   bool
}

// New starts a server; it is closed when the test ends.
func New(t interface{ Cleanup(func()) }, cfg Config) *Server {
	if cfg.Lifetime == 0 {
		cfg.Lifetime = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:           cfg,
		release:       make(chan struct{}),
		access:        map[string]accessToken{},
		refresh:       map[string]refreshToken{},
		revokedFamily: map[string]bool{},
		tokenCalls:    map[string]int{},
	}
	if cfg.InitialRefreshToken != "" {
		s.refresh[cfg.InitialRefreshToken] = refreshToken{family: "initial"}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	mux.HandleFunc("/", s.serveAPI)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		s.SetMode(Normal) // let slow handlers finish
		s.Server.Close()
	})
	return s
}

// TokenURL is the token endpoint's address.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// HeldCalls is how many token requests Slow mode has held so far.
func (s *Server) HeldCalls() int { return int(s.held.Load()) }

// SetMode changes the token endpoint's behaviour. Leaving Slow releases the
// requests it holds.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == Slow && m != Slow {
		close(s.release)
		s.release = make(chan struct{})
	}
	s.mode = m
}

// SetAPI401 makes the API refuse every token, or stop doing so.
func (s *Server) SetAPI401(on bool) {
	s.mu.Lock()
	s.api401 = on
	s.mu.Unlock()
}

// ExpireAll makes every access token issued so far invalid, as a vendor
// revoking tokens or a clock running ahead would.
func (s *Server) ExpireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.access {
		a.expires = time.Time{}
		s.access[k] = a
	}
}

// TokenCalls is how many token requests of grant succeeded.
func (s *Server) TokenCalls(grant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenCalls[grant]
}

// BadRequests lists why each refused token request was refused.
func (s *Server) BadRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.badRequests...)
}

// InvalidGrants is how many refresh tokens were refused as used or unknown.
func (s *Server) InvalidGrants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.invalidGrants
}

// APICalls is how many API calls arrived; Unauthenticated how many got 401.
func (s *Server) APICalls() (total, unauthenticated int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiCalls, s.unauthenticated
}

func (s *Server) refuse(w http.ResponseWriter, status int, code, why string) {
	s.mu.Lock()
	s.badRequests = append(s.badRequests, why)
	if code == "invalid_grant" {
		s.invalidGrants++
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": why})
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	mode, release := s.mode, s.release
	s.mu.Unlock()
	switch mode {
	case Down:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "<html><title>Error</title><body>503 Service Unavailable</body></html>")
		return
	case HTML:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><title>Login</title><body>Please sign in</body></html>")
		return
	case Slow:
		s.held.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
	}

	if r.Method != http.MethodPost {
		s.refuse(w, http.StatusMethodNotAllowed, "invalid_request", "token request must be POST, got "+r.Method)
		return
	}
	params, err := s.readParams(r)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err := s.checkClient(r, params); err != nil {
		s.refuse(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	grant := params.Get("grant_type")
	allowed := false
	for _, g := range s.cfg.Grants {
		allowed = allowed || g == grant
	}
	if !allowed {
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q not accepted", grant))
		return
	}

	family := randomString(8)
	switch grant {
	case "client_credentials":
	case "password":
		if params.Get("username") != s.cfg.Username || params.Get("password") != s.cfg.Password {
			s.refuse(w, http.StatusBadRequest, "invalid_grant", "wrong username or password")
			return
		}
	case "refresh_token":
		rt := params.Get("refresh_token")
		if rt == "" {
			s.refuse(w, http.StatusBadRequest, "invalid_request", "refresh_token missing")
			return
		}
		s.mu.Lock()
		rec, ok := s.refresh[rt]
		switch {
		case !ok || s.revokedFamily[rec.family]:
			s.mu.Unlock()
			s.refuse(w, http.StatusBadRequest, "invalid_grant", "refresh token unknown or revoked")
			return
		case rec.used:
			// Reuse: the BCP says revoke the whole family.
			s.revokedFamily[rec.family] = true
			s.mu.Unlock()
			s.refuse(w, http.StatusBadRequest, "invalid_grant", "refresh token reused; family revoked")
			return
		}
		if s.cfg.Rotate {
			rec.used = true
			s.refresh[rt] = rec
		}
		s.mu.Unlock()
		family = rec.family
	default:
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", "grant "+grant+" not implemented by the fake")
		return
	}
	s.issue(w, grant, family, params.Get("refresh_token"))
}

func (s *Server) issue(w http.ResponseWriter, grant, family, presentedRefresh string) {
	now := s.cfg.Now()
	expires := now.Add(s.cfg.Lifetime)
	access := "at-" + randomString(12)
	if s.cfg.JWTAccessTokens {
		access = makeJWT(expires)
	}
	answer := map[string]any{"access_token": access, "token_type": "Bearer"}
	switch {
	case s.cfg.OmitExpiresIn:
	case s.cfg.ExpiresInAsString:
		answer["expires_in"] = fmt.Sprint(int(s.cfg.Lifetime.Seconds()))
	default:
		answer["expires_in"] = s.cfg.Lifetime.Seconds()
	}
	s.mu.Lock()
	s.access[access] = accessToken{expires: expires, family: family}
	// A new refresh token when rotating or on first issue; a non-rotating
	// server lets the old one stand and omits it.
	if s.cfg.Rotate || presentedRefresh == "" {
		rt := "rt-" + randomString(12)
		s.refresh[rt] = refreshToken{family: family}
		answer["refresh_token"] = rt
	}
	s.tokenCalls[grant]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

func (s *Server) readParams(r *http.Request) (url.Values, error) {
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if s.cfg.JSONBody {
		if mediaType != "application/json" {
			return nil, fmt.Errorf("token request must be JSON, got Content-Type %q", mediaType)
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("token request body is not a JSON object of strings: %v", err)
		}
		v := url.Values{}
		for k, val := range m {
			v.Set(k, val)
		}
		return v, nil
	}
	if mediaType != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("token request must be form-encoded, got Content-Type %q", mediaType)
	}
	return url.ParseQuery(string(body))
}

func (s *Server) checkClient(r *http.Request, params url.Values) error {
	user, pass, hasBasic := r.BasicAuth()
	inBody := params.Has("client_id") || params.Has("client_secret")
	if s.cfg.ClientID == "" {
		return nil
	}
	if s.cfg.BasicAuth {
		if !hasBasic {
			return fmt.Errorf("client authentication must be HTTP Basic")
		}
		if params.Has("client_secret") {
			return fmt.Errorf("client_secret must not be in the body with Basic authentication")
		}
		// RFC 6749 2.3.1: form-encoded before Basic encoding.
		u, err1 := url.QueryUnescape(user)
		p, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil || u != s.cfg.ClientID || p != s.cfg.ClientSecret {
			return fmt.Errorf("wrong client credentials")
		}
		return nil
	}
	if r.Header.Get("Authorization") != "" {
		return fmt.Errorf("client credentials must be in the body, not an Authorization header")
	}
	if !inBody || params.Get("client_id") != s.cfg.ClientID || params.Get("client_secret") != s.cfg.ClientSecret {
		return fmt.Errorf("wrong or missing client credentials in the body")
	}
	return nil
}

// Echo is what the API answers: the request as it arrived.
type Echo struct {
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	RawPath    string      `json:"raw_path"`
	RequestURI string      `json:"request_uri"`
	Query      string      `json:"query"`
	Header     http.Header `json:"header"`
	BodyLen    int         `json:"body_len"`
	BodySHA256 string      `json:"body_sha256"`
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	token := ""
	if s.cfg.QueryToken {
		token = r.URL.Query().Get("access_token")
	} else if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimPrefix(h, "Bearer ")
	}
	s.mu.Lock()
	s.apiCalls++
	a, ok := s.access[token]
	valid := ok && s.cfg.Now().Before(a.expires) && !s.revokedFamily[a.family] && !s.api401
	if !valid {
		s.unauthenticated++
	}
	s.mu.Unlock()
	if !valid {
		// Like a Laravel API; the body is read, or not, as a real server might.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"message":"Unauthenticated."}`)
		return
	}
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(Echo{
		Method: r.Method, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath,
		RequestURI: r.RequestURI, Query: r.URL.RawQuery, Header: r.Header,
		BodyLen: int(n), BodySHA256: hex.EncodeToString(h.Sum(nil)),
	})
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// makeJWT builds an unsigned-looking JWT whose payload has exp.
func makeJWT(exp time.Time) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	payload := enc.EncodeToString([]byte(fmt.Sprintf(`{"exp":%d,"jti":"%s"}`, exp.Unix(), randomString(6))))
	return header + "." + payload + "." + enc.EncodeToString([]byte(randomString(16)))
}

// IssuedSecrets lists every access and refresh token the server issued or
// accepted, for tests that check secrets never leak.
func (s *Server) IssuedSecrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.access {
		out = append(out, k)
	}
	for k := range s.refresh {
		out = append(out, k)
	}
	return out
}

// MakeJWT is makeJWT for tests of JWT expiry parsing.
func MakeJWT(exp time.Time) string { return makeJWT(exp) }
