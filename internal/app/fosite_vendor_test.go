package app

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"
)

// fositeVendor is a real OAuth2 server (ory/fosite) for accounts: each
// user gets a refresh token by the password grant, refresh tokens rotate,
// and a refresh token presented twice revokes its whole family (fosite's
// reuse detection). Its API answers "ok SUBJECT" for a live access token,
// so a test sees whose token a call carried; tokens a test expires get 401.
type fositeVendor struct {
	url      string
	provider fosite.OAuth2Provider
	// serial runs one request at a time: fosite's memory store (a test
	// store) races with itself.
	serial sync.Mutex

	mu         sync.Mutex
	refreshes  map[string]int // by subject
	refusals   []string       // token endpoint errors
	last       map[string]string
	expired    map[string]bool
	apiAnswers int
	// users names each session subject's user: fosite's store makes a
	// subject of its own at the password grant.
	users map[string]string
}

const fositeClientSecret = "fosite-client-secret"

func newFositeVendor(t *testing.T, users ...string) *fositeVendor {
	t.Helper()
	v := &fositeVendor{refreshes: map[string]int{}, last: map[string]string{}, expired: map[string]bool{}, users: map[string]string{}}
	store := storage.NewMemoryStore()
	for _, u := range users {
		store.Users[u] = storage.MemoryUserRelation{Username: u, Password: "pw-" + u}
	}
	hashed, _ := bcrypt.GenerateFromPassword([]byte(fositeClientSecret), bcrypt.MinCost)
	store.Clients["app"] = &fosite.DefaultClient{ID: "app", Secret: hashed,
		GrantTypes: []string{"password", "refresh_token"}, Scopes: []string{"offline", "read"}}
	signing, _ := rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	srv := serve(t, mux)
	v.url = srv
	cfg := &fosite.Config{AccessTokenLifespan: time.Hour, RefreshTokenLifespan: 24 * time.Hour,
		GlobalSecret: []byte("a-global-secret-of-32-bytes-long"), TokenURL: srv + "/token",
		ScopeStrategy: fosite.HierarchicScopeStrategy, HashCost: bcrypt.MinCost}
	v.provider = compose.ComposeAllEnabled(cfg, store, signing)
	mux.HandleFunc("/token", v.token)
	mux.HandleFunc("/api/", v.api)
	return v
}

func (v *fositeVendor) token(w http.ResponseWriter, r *http.Request) {
	v.serial.Lock()
	defer v.serial.Unlock()
	ctx := r.Context()
	// A refresh restores the session the password grant made.
	ar, err := v.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err == nil {
		if ar.GetRequestedScopes().Has("offline") {
			ar.GrantScope("offline")
		}
		var resp fosite.AccessResponder
		if resp, err = v.provider.NewAccessResponse(ctx, ar); err == nil {
			v.mu.Lock()
			subject := ar.GetSession().GetSubject()
			if ar.GetGrantTypes().ExactOne("password") {
				v.users[subject] = r.PostFormValue("username")
			} else {
				v.refreshes[v.users[subject]]++
			}
			v.mu.Unlock()
			v.provider.WriteAccessResponse(ctx, w, ar, resp)
			return
		}
	}
	v.mu.Lock()
	v.refusals = append(v.refusals, fosite.ErrorToRFC6749Error(err).ErrorField+": "+fosite.ErrorToRFC6749Error(err).GetDescription())
	v.mu.Unlock()
	v.provider.WriteAccessError(ctx, w, ar, err)
}

func (v *fositeVendor) api(w http.ResponseWriter, r *http.Request) {
	v.serial.Lock()
	defer v.serial.Unlock()
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	_, ar, err := v.provider.IntrospectToken(r.Context(), tok, fosite.AccessToken, &fosite.DefaultSession{})
	v.mu.Lock()
	defer v.mu.Unlock()
	v.apiAnswers++
	if err != nil || v.expired[tok] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	user := v.users[ar.GetSession().GetSubject()]
	v.last[user] = tok
	w.Write([]byte("ok " + user))
}

// refreshTokenFor is a refresh token of user's, as an application that
// signed the user in would hold it.
func (v *fositeVendor) refreshTokenFor(t *testing.T, user string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {"pw-" + user}, "scope": {"offline read"}}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", v.url+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", fositeClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.RefreshToken == "" {
		t.Fatalf("password grant for %s: %d %v", user, resp.StatusCode, err)
	}
	return body.RefreshToken
}

// expire makes every token the API last saw for subjects answer 401, as an
// expiry the sidecar did not see coming does.
func (v *fositeVendor) expire(subjects ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range subjects {
		v.expired[v.last[s]] = true
	}
}

func (v *fositeVendor) lastToken(subject string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last[subject]
}

func (v *fositeVendor) stats() (refreshes map[string]int, refusals []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]int{}
	for k, n := range v.refreshes {
		out[k] = n
	}
	return out, append([]string(nil), v.refusals...)
}

// env is a route "api" on the vendor whose own account is user owner's.
func (v *fositeVendor) env(t *testing.T, owner string) map[string]string {
	return map[string]string{"ROUTES": "api", "API_UPSTREAM_URL": v.url + "/api", "API_TOKEN_URL": v.url + "/token",
		"API_CLIENT_ID": "app", "API_CLIENT_SECRET": fositeClientSecret, "API_REFRESH_TOKEN": v.refreshTokenFor(t, owner)}
}
