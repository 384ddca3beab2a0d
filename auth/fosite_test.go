package auth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/logtest"
	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
)

// fositeServer is a real OAuth2 server (ory/fosite) whose client "svc"
// authenticates by private_key_jwt: it verifies each assertion's signature
// against the client's keys, its aud (the token URL), exp, and that its jti
// was never seen before.
type fositeServer struct {
	*httptest.Server
	mu     sync.Mutex
	client *fosite.DefaultOpenIDConnectClient
	issued int
}

func newFositeServer(t *testing.T, keys map[string]*rsa.PrivateKey) *fositeServer {
	t.Helper()
	fs := &fositeServer{}
	store := storage.NewMemoryStore()
	fs.client = &fosite.DefaultOpenIDConnectClient{
		DefaultClient:           &fosite.DefaultClient{ID: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}},
		TokenEndpointAuthMethod: "private_key_jwt", TokenEndpointAuthSigningAlgorithm: "RS256",
	}
	fs.setKeys(keys)
	store.Clients["svc"] = fs.client
	signing, _ := rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	fs.Server = httptest.NewServer(mux)
	t.Cleanup(fs.Close)
	cfg := &fosite.Config{AccessTokenLifespan: time.Hour, GlobalSecret: []byte("a-global-secret-of-32-bytes-long"),
		TokenURL: fs.URL + "/token", ScopeStrategy: fosite.HierarchicScopeStrategy}
	provider := compose.ComposeAllEnabled(cfg, store, signing)
	mux.Handle("/token", fositeTokenEndpoint(provider, func(fosite.AccessRequester) {
		fs.mu.Lock()
		fs.issued++
		fs.mu.Unlock()
	}))
	mux.HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) {
		provider.WriteRevocationResponse(r.Context(), w, provider.NewRevocationRequest(r.Context(), r))
	})
	return fs
}

// fositeTokenEndpoint is fosite's token endpoint. Before the token is issued,
// the audience asked for — checked against the client's by fosite — is
// granted, as Hydra does; issued sees each request answered with a token.
func fositeTokenEndpoint(provider fosite.OAuth2Provider, issued func(fosite.AccessRequester)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ar, err := provider.NewAccessRequest(ctx, r, new(fosite.DefaultSession))
		if err != nil {
			provider.WriteAccessError(ctx, w, ar, err)
			return
		}
		for _, aud := range ar.GetRequestedAudience() {
			ar.GrantAudience(aud)
		}
		resp, err := provider.NewAccessResponse(ctx, ar)
		if err != nil {
			provider.WriteAccessError(ctx, w, ar, err)
			return
		}
		issued(ar)
		provider.WriteAccessResponse(ctx, w, ar, resp)
	})
}

// setKeys is the client's registered public keys, by kid.
func (fs *fositeServer) setKeys(keys map[string]*rsa.PrivateKey) {
	set := &jose.JSONWebKeySet{}
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	}
	fs.mu.Lock()
	fs.client.JSONWebKeys = set
	fs.mu.Unlock()
}

// thumbprint is the key's RFC 7638 thumbprint, the kid the sidecar sends
// when CLIENT_KEY_ID is unset.
func thumbprint(k *rsa.PrivateKey) string {
	tp, _ := (&jose.JSONWebKey{Key: &k.PublicKey}).Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(tp)
}

func writeRSAKey(t *testing.T, path string, key *rsa.PrivateKey) {
	t.Helper()
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as editors and Secret mounts swap files
		t.Fatal(err)
	}
}

// private_key_jwt against ory/fosite: tokens with signed assertions, each
// with a new jti; then the key file is rotated mid-traffic and the server
// forgets the old key — no call fails, and the new key is used.
func TestPrivateKeyJWTAgainstFosite(t *testing.T) {
	first, _ := rsa.GenerateKey(rand.Reader, 2048)
	second, _ := rsa.GenerateKey(rand.Reader, 2048)
	fs := newFositeServer(t, map[string]*rsa.PrivateKey{thumbprint(first): first})
	keyFile := filepath.Join(t.TempDir(), "client.key")
	writeRSAKey(t, keyFile, first)

	debugLog, logs := logtest.New()
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	ca, err := newClientAuth(Settings{ClientID: "svc", ClientKeyFile: keyFile, TokenURL: fs.URL + "/token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ca.(*PrivateKeyJWT); !ok {
		t.Fatalf("CLIENT_KEY_FILE alone chose %T, want private_key_jwt", ca)
	}
	g := &OAuth2Grant{Type: GrantClientCredentials, TokenURL: fs.URL + "/token", Scope: "read",
		Endpoint: &Endpoint{Auth: ca, Client: http.DefaultClient, Log: debugLog}}
	for i := range 3 {
		if tok, err := g.Fetch(context.Background(), Token{}); err != nil || tok.AccessToken == "" {
			t.Fatalf("token %d: %v", i, err)
		}
	}

	// Rotation: the server accepts both keys, the file changes, the server
	// drops the old key. Calls go on throughout.
	fs.setKeys(map[string]*rsa.PrivateKey{thumbprint(first): first, thumbprint(second): second})
	writeRSAKey(t, keyFile, second)
	fs.setKeys(map[string]*rsa.PrivateKey{thumbprint(second): second})
	for i := range 3 {
		if _, err := g.Fetch(context.Background(), Token{}); err != nil {
			t.Fatalf("token %d after the key rotated: %v", i, err)
		}
	}
	if fs.issued != 6 {
		t.Fatalf("%d tokens issued, want 6", fs.issued)
	}

	// Revocation authenticates the same way: fosite takes the assertion at
	// its revocation endpoint only if aud is its token URL.
	g.RevokeURL = fs.URL + "/revoke"
	tok, err := g.Fetch(context.Background(), Token{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Revoke(context.Background(), tok); err != nil {
		t.Fatalf("revoking with private_key_jwt: %v", err)
	}
}
