package route

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/proxy"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func build(t testing.TB, env map[string]string, store cache.LockingStore) (*Table, error) {
	t.Helper()
	cfg, err := config.LoadFrom(env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	engine, err := proxy.NewEngine(proxy.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if store == nil {
		store = cache.NewMemory()
	}
	return Build(cfg.Routes, Deps{Store: store, Engine: engine, TokenTimeout: time.Second, RefreshMargin: time.Minute})
}

// Route names that cannot be routes stop start-up with an error naming
// ROUTES (moved here from the config tests with the rules themselves).
func TestBadRouteNamesNameROUTES(t *testing.T) {
	for _, names := range []string{"Bad_Name", "healthz", "a,a", "a-b,a_b"} {
		env := map[string]string{"ROUTES": names}
		for _, n := range strings.Split(names, ",") {
			env[config.RoutePrefix(n)+"ACCESS_TOKEN"] = "t"
			env[config.RoutePrefix(n)+"UPSTREAM_URL"] = "https://api.example"
		}
		_, err := build(t, env, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "ROUTES:") {
			t.Errorf("ROUTES=%s: err = %v, want one starting with ROUTES:", names, err)
		}
	}
}

// refreshRoute is a route living on a refresh token whose token endpoint
// cannot be reached: any token it serves came from the store.
func refreshRoute(grant string) map[string]string {
	env := map[string]string{
		"ROUTES": "api", "API_UPSTREAM_URL": "http://127.0.0.1:1",
		"API_TOKEN_URL": "http://127.0.0.1:1/token", "API_REFRESH_TOKEN": "rt-configured",
	}
	if grant != "" {
		env["API_GRANT"] = grant
	}
	return env
}

// Regression: the stored token's key hashed GRANT as written, so setting
// GRANT to the grant that was inferred orphaned the stored (rotated)
// refresh token. The key follows the effective grant.
func TestSpellingOutTheInferredGrantKeepsTheStoredToken(t *testing.T) {
	store := cache.NewMemory()
	inferred, err := build(t, refreshRoute(""), store)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := inferred.Get("api")
	rotated := auth.Token{AccessToken: "at-rotated", RefreshToken: "rt-rotated", Expiry: time.Now().Add(time.Hour)}
	if err := r.Keeper.Store(context.Background(), rotated); err != nil {
		t.Fatal(err)
	}

	explicit, err := build(t, refreshRoute("refresh_token"), store)
	if err != nil {
		t.Fatal(err)
	}
	r, _ = explicit.Get("api")
	tok, err := r.Keeper.Token(context.Background())
	if err != nil || tok.AccessToken != "at-rotated" {
		t.Fatalf("with GRANT spelled out: token %v, %v; want the stored one", tok, err)
	}
}

// A token an earlier version stored under the key it derived from GRANT as
// written is still found after the upgrade. The key is the one that version
// computed for this configuration.
func TestTokenStoredByAnEarlierVersionIsFound(t *testing.T) {
	store := cache.NewMemory()
	raw, _ := json.Marshal(auth.Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: time.Now().Add(time.Hour)})
	if err := store.Set(context.Background(), "token:api:60530a830f0f5e25c03762b6", raw, 0); err != nil {
		t.Fatal(err)
	}
	table, err := build(t, refreshRoute("refresh_token"), store)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	tok, err := r.Keeper.Token(context.Background())
	if err != nil || tok.AccessToken != "at-old" {
		t.Fatalf("token %v, %v; want the one stored by the earlier version", tok, err)
	}
}

// Regression: the token client followed redirects, re-sending the client
// secret (and passwords, refresh tokens) to wherever they pointed.
func TestTokenRequestsNeverFollowRedirects(t *testing.T) {
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	defer elsewhere.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/token", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	table, err := build(t, map[string]string{
		"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": redirecting.URL + "/token", "API_CLIENT_ID": "id", "API_CLIENT_SECRET": "client-secret-value",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	if _, err := r.Keeper.Token(context.Background()); err == nil {
		t.Fatal("a redirect was taken for a token")
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target got %d token requests", n)
	}
}

// Regression: a token endpoint on plain http to another host was used,
// sending secrets in clear. It is refused at start-up unless the operator
// opts in; loopback is fine.
func TestPlainHTTPTokenEndpointsAreRefused(t *testing.T) {
	env := func(tokenURL, allow string) map[string]string {
		e := map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
			"API_TOKEN_URL": tokenURL, "API_CLIENT_ID": "id", "API_CLIENT_SECRET": "s"}
		if allow != "" {
			e["API_ALLOW_INSECURE_TOKEN_URL"] = allow
		}
		return e
	}
	if _, err := build(t, env("http://auth.example/token", ""), nil); err == nil || !strings.HasPrefix(err.Error(), "API_TOKEN_URL:") {
		t.Fatalf("err = %v, want one naming API_TOKEN_URL", err)
	}
	for _, ok := range []map[string]string{env("http://auth.example/token", "true"), env("http://127.0.0.1:9/token", ""),
		env("http://localhost:9/token", ""), env("https://auth.example/token", "")} {
		if _, err := build(t, ok, nil); err != nil {
			t.Errorf("%s: %v", ok["API_TOKEN_URL"], err)
		}
	}
}

// strictExchange is a token endpoint that answers only what RFC 7523 §2.1
// and RFC 8693 §2.1 describe, and records each grant's inputs.
func strictExchange(t *testing.T, seen chan<- url.Values) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		r.ParseForm()
		p := r.PostForm
		ok := false
		switch p.Get("grant_type") {
		case "urn:ietf:params:oauth:grant-type:jwt-bearer":
			ok = p.Get("assertion") != ""
		case "urn:ietf:params:oauth:grant-type:token-exchange":
			ok = p.Get("subject_token") != "" && p.Get("subject_token_type") != "" &&
				(p.Get("actor_token") == "") == (p.Get("actor_token_type") == "")
		}
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_request"}`))
			return
		}
		seen <- p
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at-%d","token_type":"Bearer","expires_in":3600,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`, time.Now().UnixNano())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// The jwt_bearer grant presents the assertion in its file, read at each
// request: a rotated assertion is used from the next token request on.
func TestJWTBearerGrantReadsItsAssertionEachTime(t *testing.T) {
	seen := make(chan url.Values, 4)
	srv := strictExchange(t, seen)
	file := filepath.Join(t.TempDir(), "assertion")
	writeFile(t, file, "assertion-one")
	table, err := build(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": srv.URL, "API_GRANT": "jwt_bearer", "API_ASSERTION_FILE": file, "API_SCOPE": "read"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	first, err := r.Keeper.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p := <-seen; p.Get("assertion") != "assertion-one" || p.Get("scope") != "read" {
		t.Fatalf("first request %v", p)
	}
	writeFile(t, file, "assertion-two")
	r.Keeper.Invalidate(first.AccessToken) // the upstream refused it: a new one
	if _, err := r.Keeper.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := <-seen; p.Get("assertion") != "assertion-two" {
		t.Fatalf("after the rotation the request presented %q", p.Get("assertion"))
	}
}

// The token_exchange grant (RFC 8693) trades the subject token in its file,
// with its type, audience, resource, requested type and actor token.
func TestTokenExchangeGrant(t *testing.T) {
	seen := make(chan url.Values, 4)
	srv := strictExchange(t, seen)
	dir := t.TempDir()
	subject, actor := filepath.Join(dir, "subject"), filepath.Join(dir, "actor")
	writeFile(t, subject, "subject-jwt")
	writeFile(t, actor, "actor-jwt")
	table, err := build(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": srv.URL, "API_GRANT": "token_exchange", "API_SUBJECT_TOKEN_FILE": subject,
		"API_ACTOR_TOKEN_FILE": actor, "API_AUDIENCE": "billing", "API_RESOURCE": "https://api.example/",
		"API_REQUESTED_TOKEN_TYPE": "urn:ietf:params:oauth:token-type:access_token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	if _, err := r.Keeper.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := <-seen
	want := map[string]string{"subject_token": "subject-jwt", "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
		"audience": "billing", "resource": "https://api.example/", "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"actor_token": "actor-jwt", "actor_token_type": "urn:ietf:params:oauth:token-type:jwt"}
	for k, v := range want {
		if p.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, p.Get(k), v)
		}
	}
	// Without its subject token file, the route does not start.
	if _, err := build(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": srv.URL, "API_GRANT": "token_exchange"}, nil); err == nil || !strings.HasPrefix(err.Error(), "API_SUBJECT_TOKEN_FILE:") {
		t.Fatalf("without SUBJECT_TOKEN_FILE: %v", err)
	}
}

// A jwt_bearer assertion signed with CLIENT_KEY_FILE for ASSERTION_SUBJECT:
// the endpoint verifies the signature and the claims.
func TestJWTBearerGrantSignsForItsSubject(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	seen := make(chan url.Values, 2)
	srv := strictExchange(t, seen)
	table, err := build(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": srv.URL, "API_GRANT": "jwt_bearer", "API_CLIENT_ID": "svc", "API_CLIENT_AUTH": "none",
		"API_CLIENT_KEY_FILE": keyFile, "API_ASSERTION_SUBJECT": "robot@example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	if _, err := r.Keeper.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := <-seen
	parsed, err := jwt.ParseSigned(p.Get("assertion"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	if err := parsed.Claims(&key.PublicKey, &claims); err != nil {
		t.Fatalf("the assertion's signature does not verify: %v", err)
	}
	if claims.Issuer != "svc" || claims.Subject != "robot@example.com" || !claims.Audience.Contains(srv.URL) || claims.ID == "" {
		t.Fatalf("claims %+v", claims)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, 0); err != nil {
		t.Fatalf("the assertion is not valid now: %v", err)
	}
}

// Regression: with the oauth2 preset's default CLIENT_AUTH (basic), a
// CLIENT_KEY_FILE was ignored and the client went as a public one. A key
// given means private_key_jwt, and a key that does not read stops start-up
// naming it.
func TestAClientKeyFileMeansPrivateKeyJWT(t *testing.T) {
	_, err := build(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": "https://auth.example/token", "API_CLIENT_ID": "c", "API_CLIENT_KEY_FILE": "/nonexistent/key.pem"}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "API_CLIENT_KEY_FILE:") {
		t.Fatalf("err = %v, want one naming API_CLIENT_KEY_FILE", err)
	}
}

// client_secret_jwt: the secret never travels; the endpoint verifies the
// HS256 assertion with it, and a refused token is replaced with a new one.
func TestClientSecretJWT(t *testing.T) {
	const secret = "a-client-secret-of-32-bytes-long!"
	var tokenURL string
	var assertions atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		p := r.PostForm
		parsed, err := jwt.ParseSigned(p.Get("client_assertion"), []jose.SignatureAlgorithm{jose.HS256})
		var claims jwt.Claims
		if err != nil || p.Get("client_secret") != "" || r.Header.Get("Authorization") != "" ||
			p.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
			parsed.Claims([]byte(secret), &claims) != nil || claims.Issuer != "svc" || claims.Subject != "svc" ||
			!claims.Audience.Contains(tokenURL) || claims.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, 0) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		n := assertions.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at-%d","expires_in":3600}`, n)
	}))
	defer srv.Close()
	tokenURL = srv.URL + "/token"
	table, err := build(t, map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": "https://api.example",
		"API_TOKEN_URL": tokenURL, "API_CLIENT_ID": "svc", "API_CLIENT_SECRET": secret, "API_CLIENT_AUTH": "client_secret_jwt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := table.Get("api")
	first, err := r.Keeper.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Keeper.Invalidate(first.AccessToken) // the upstream refused it
	second, err := r.Keeper.Token(context.Background())
	if err != nil || second.AccessToken == first.AccessToken || assertions.Load() != 2 {
		t.Fatalf("after a refusal: %v, %v (%d assertions)", second, err, assertions.Load())
	}
}
