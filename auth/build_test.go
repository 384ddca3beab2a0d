package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"
)

// audienceServer is ory/fosite with a client "api-caller" (client secret,
// client_credentials) allowed the audience https://api.example.com: fosite
// refuses any other audience asked for; the audience of each token it
// issued is recorded.
type audienceServer struct {
	*httptest.Server
	mu      sync.Mutex
	granted [][]string // each issued token's audience, as the server took it
}

func newAudienceServer(t *testing.T) *audienceServer {
	t.Helper()
	as := &audienceServer{}
	hash, err := bcrypt.GenerateFromPassword([]byte("api-caller-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	store := storage.NewMemoryStore()
	store.Clients["api-caller"] = &fosite.DefaultClient{ID: "api-caller", Secret: hash,
		GrantTypes: []string{"client_credentials"}, Audience: []string{"https://api.example.com"}}
	signing, _ := rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	as.Server = httptest.NewServer(mux)
	t.Cleanup(as.Close)
	provider := compose.ComposeAllEnabled(&fosite.Config{AccessTokenLifespan: time.Hour,
		GlobalSecret: []byte("a-global-secret-of-32-bytes-long"), TokenURL: as.URL + "/token"}, store, signing)
	mux.Handle("/token", fositeTokenEndpoint(provider, func(ar fosite.AccessRequester) {
		as.mu.Lock()
		as.granted = append(as.granted, slices.Clone(ar.GetGrantedAudience()))
		as.mu.Unlock()
	}))
	return as
}

func buildGeneric(t *testing.T, s Settings) (Built, error) {
	t.Helper()
	p, ok := LookupPreset("oauth2")
	if !ok {
		t.Fatal("no oauth2 preset")
	}
	return p.Build("api", p.Apply(s), http.DefaultClient, nil, nil)
}

// AUDIENCE goes with a client_credentials request: the server issues a token
// for that API, and refuses one the client may not have. (It was dropped:
// the token came for the server's default audience, whatever was set.)
func TestAudienceIsSentWithClientCredentials(t *testing.T) {
	as := newAudienceServer(t)
	settings := func(audience string) Settings {
		return Settings{UpstreamURL: "https://api.example.com/v1", Grant: "client_credentials",
			ClientID: "api-caller", ClientSecret: "api-caller-secret", TokenURL: as.URL + "/token",
			AllowInsecureTokenURL: true, Audience: audience}
	}
	b, err := buildGeneric(t, settings("https://api.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Grant.Fetch(context.Background(), Token{}); err != nil {
		t.Fatalf("a token for the allowed audience: %v", err)
	}
	as.mu.Lock()
	granted := as.granted[len(as.granted)-1]
	as.mu.Unlock()
	if !slices.Equal(granted, []string{"https://api.example.com"}) {
		t.Fatalf("granted audience %v, want the one asked for", granted)
	}

	b, err = buildGeneric(t, settings("https://payroll.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Grant.Fetch(context.Background(), Token{}); err == nil {
		t.Fatal("a token for an audience the client may not have: the audience was not sent")
	}
}

// Where the route's request would not carry them, the settings stop
// start-up with their names rather than being dropped.
func TestRequestExtrasRefusedWhereNotSent(t *testing.T) {
	base := Settings{UpstreamURL: "https://api.example.com/v1", TokenURL: "https://auth.example.com/token",
		ClientID: "c", ClientSecret: "s", RefreshToken: "r"}
	for _, tc := range []struct {
		change func(*Settings)
		want   string
	}{
		{func(s *Settings) { s.Grant, s.Audience = "refresh_token", "https://api.example.com" }, "AUDIENCE"},
		{func(s *Settings) { s.Grant, s.Resource = "refresh_token", "https://api.example.com" }, "RESOURCE"},
		{func(s *Settings) { s.Grant, s.RequestedTokenType = "client_credentials", "urn:x" }, "REQUESTED_TOKEN_TYPE"},
		{func(s *Settings) { s.Grant, s.SubjectTokenType = "client_credentials", "urn:x" }, "SUBJECT_TOKEN_TYPE"},
		{func(s *Settings) { s.Grant, s.Resource = "client_credentials", "api.example.com" }, "RESOURCE"},
		{func(s *Settings) { s.Grant, s.Resource = "client_credentials", "https://api.example.com/#x" }, "RESOURCE"},
	} {
		s := base
		tc.change(&s)
		_, err := buildGeneric(t, s)
		var se *SettingError
		if !errors.As(err, &se) || se.Setting != tc.want {
			t.Errorf("grant %s: %v, want an error for %s", s.Grant, err, tc.want)
		}
	}
	s := base
	s.Grant, s.Resource = "client_credentials", "https://api.example.com"
	if _, err := buildGeneric(t, s); err != nil {
		t.Errorf("RESOURCE with client_credentials: %v", err)
	}

	veem, _ := LookupPreset("veem")
	_, err := veem.Build("veem", veem.Apply(Settings{ClientID: "c", ClientSecret: "s", Audience: "https://api.example.com"}), http.DefaultClient, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "AUDIENCE") {
		t.Errorf("AUDIENCE on a vendor preset: %v", err)
	}
}

// QUERY_PARAM without query injection stops start-up: the token would go in
// the Authorization header while the operator expects the query string.
func TestQueryParamNeedsQueryInjection(t *testing.T) {
	s := Settings{UpstreamURL: "https://api.example.com/v1", AccessToken: "t", QueryParam: "token"}
	var se *SettingError
	if _, err := buildGeneric(t, s); !errors.As(err, &se) || se.Setting != "QUERY_PARAM" {
		t.Fatalf("QUERY_PARAM with header injection: %v", err)
	}
	s.Inject = "query"
	b, err := buildGeneric(t, s)
	if err != nil || b.QueryParam != "token" {
		t.Fatalf("QUERY_PARAM with INJECT=query: %q, %v", b.QueryParam, err)
	}
}
