// Package oauthtest is a strict OAuth2 server and protected API for tests:
// it refuses token requests not shaped as configured, so a client that
// drifts from its dialect fails its tests. It is the generic front end of
// the issuing core the vendor emulators share (internal/issuer).
package oauthtest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/issuer"
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
	// Now is the server's clock; nil means the wall clock.
	Now clock.Clock
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
	iss *issuer.Issuer

	mu      sync.Mutex
	mode    Mode
	release chan struct{}
	held    atomic.Int32 // requests Slow mode has held
}

// New starts a server; it is closed when the test ends.
func New(t interface{ Cleanup(func()) }, cfg Config) *Server {
	if cfg.Lifetime == 0 {
		cfg.Lifetime = time.Hour
	}
	s := &Server{cfg: cfg, iss: issuer.New(cfg.Now, cfg.Rotate), release: make(chan struct{})}
	if cfg.InitialRefreshToken != "" {
		s.iss.AddRefresh(cfg.InitialRefreshToken, "initial", time.Time{})
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
func (s *Server) SetAPI401(on bool) { s.iss.SetRefuseAll(on) }

// ExpireAll makes every access token issued so far invalid, as a vendor
// revoking tokens or a clock running ahead would.
func (s *Server) ExpireAll() { s.iss.ExpireAccess() }

// TokenCalls is how many token requests of grant succeeded.
func (s *Server) TokenCalls(grant string) int { return s.iss.Stats().TokenRequests[grant] }

// BadRequests lists why each refused token request was refused.
func (s *Server) BadRequests() []string { return s.iss.Stats().Refusals }

// InvalidGrants is how many refresh tokens were refused as used or unknown.
func (s *Server) InvalidGrants() int {
	n := 0
	for _, why := range s.iss.Stats().Refusals {
		if strings.HasPrefix(why, "invalid_grant:") {
			n++
		}
	}
	return n
}

// APICalls is how many API calls arrived; unauthenticated how many got 401.
func (s *Server) APICalls() (total, unauthenticated int) {
	st := s.iss.Stats()
	return st.APICalls, st.API401s
}

// IssuedSecrets lists every access and refresh token the server issued or
// accepted, for tests that check secrets never leak.
func (s *Server) IssuedSecrets() []string { return s.iss.Secrets() }

func (s *Server) refuse(w http.ResponseWriter, status int, code, why string) {
	s.iss.Refuse(code + ": " + why)
	issuer.WriteJSON(w, status, map[string]string{"error": code, "error_description": why})
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

	family := issuer.RandomToken("f-")
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
		rec, why := s.iss.UseRefresh(rt)
		if why != "" {
			s.refuse(w, http.StatusBadRequest, "invalid_grant", why)
			return
		}
		family = rec.Family
	default:
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", "grant "+grant+" not implemented by the fake")
		return
	}
	s.issue(w, grant, family, params.Get("refresh_token"))
}

func (s *Server) issue(w http.ResponseWriter, grant, family, presentedRefresh string) {
	expires := s.iss.Now().Add(s.cfg.Lifetime)
	access := issuer.RandomToken("at-")
	if s.cfg.JWTAccessTokens {
		access = issuer.JWT(expires, nil)
	}
	answer := map[string]any{"access_token": access, "token_type": "Bearer"}
	switch {
	case s.cfg.OmitExpiresIn:
	case s.cfg.ExpiresInAsString:
		answer["expires_in"] = fmt.Sprint(int(s.cfg.Lifetime.Seconds()))
	default:
		answer["expires_in"] = s.cfg.Lifetime.Seconds()
	}
	// A new refresh token when rotating or on first issue; a non-rotating
	// server lets the old one stand and omits it.
	var refresh string
	if s.cfg.Rotate || presentedRefresh == "" {
		refresh = issuer.RandomToken("rt-")
		answer["refresh_token"] = refresh
	}
	s.iss.Grant(grant, family, "", access, refresh, expires, time.Time{}, refresh != "")
	issuer.WriteJSON(w, http.StatusOK, answer)
}

func (s *Server) readParams(r *http.Request) (url.Values, error) {
	if !s.cfg.JSONBody {
		return issuer.FormParams(r)
	}
	m, err := issuer.JSONParams(r)
	if err != nil {
		return nil, err
	}
	v := url.Values{}
	for k, val := range m {
		v.Set(k, val)
	}
	return v, nil
}

func (s *Server) checkClient(r *http.Request, params url.Values) error {
	if s.cfg.ClientID == "" {
		return nil
	}
	if s.cfg.BasicAuth {
		id, secret, ok := issuer.BasicClient(r)
		switch {
		case !ok:
			return fmt.Errorf("client authentication must be HTTP Basic")
		case params.Has("client_secret"):
			return fmt.Errorf("client_secret must not be in the body with Basic authentication")
		case id != s.cfg.ClientID || secret != s.cfg.ClientSecret:
			return fmt.Errorf("wrong client credentials")
		}
		return nil
	}
	if r.Header.Get("Authorization") != "" {
		return fmt.Errorf("client credentials must be in the body, not an Authorization header")
	}
	if !params.Has("client_id") || params.Get("client_id") != s.cfg.ClientID || params.Get("client_secret") != s.cfg.ClientSecret {
		return fmt.Errorf("wrong or missing client credentials in the body")
	}
	return nil
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	token := issuer.Bearer(r)
	if s.cfg.QueryToken {
		token = r.URL.Query().Get("access_token")
	}
	if _, ok := s.iss.CheckAccess(token); !ok {
		// Like a Laravel API; the body is read, or not, as a real server might.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"message":"Unauthenticated."}`)
		return
	}
	issuer.WriteEcho(w, r, "oauthtest")
}
