package emulators

import (
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/internal/issuer"
)

// Viadeo emulates api.viadeo.com and secure.viadeo.com on one server: the
// authorize2 / access_token2 code flow with a form body and the client
// credentials in it, tokens that never expire, the token taken only from the
// access_token query parameter, and revoke_access_token2.
type Viadeo struct {
	*issuer.Issuer
	o Options
	// FormAnswers makes access_token2 answer form-encoded, not JSON.
	FormAnswers bool
	// RefuseWith200 answers a revoked token with HTTP 200 and the error
	// body, as Viadeo sometimes does.
	RefuseWith200 bool
}

// NewViadeo returns the emulator.
func NewViadeo(o Options) *Viadeo { return &Viadeo{Issuer: issuer.New(o.Now, false), o: o} }

func (v *Viadeo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/oauth-provider/authorize2":
		authorize(v.Issuer, v.o, w, r)
	case "/oauth-provider/access_token2":
		v.token(w, r)
	case "/oauth-provider/revoke_access_token2":
		v.revoke(w, r)
	default:
		v.api(w, r)
	}
}

func (v *Viadeo) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(v.Issuer, w, http.StatusMethodNotAllowed, "invalid_request", "access_token2 is a POST")
		return
	}
	if r.Header.Get("Authorization") != "" {
		oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_request", "client credentials go in the body")
		return
	}
	p, err := issuer.FormParams(r)
	if err != nil {
		oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if p.Get("client_id") != v.o.ClientID || p.Get("client_secret") != v.o.ClientSecret {
		oauthError(v.Issuer, w, http.StatusUnauthorized, "invalid_client", "bad client credentials")
		return
	}
	if p.Get("grant_type") != "authorization_code" {
		oauthError(v.Issuer, w, http.StatusBadRequest, "unsupported_grant_type", p.Get("grant_type"))
		return
	}
	family, why := v.UseCode(p.Get("code"), p.Get("redirect_uri"))
	if why != "" {
		oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_grant", why)
		return
	}
	access := v.IssueAccessTokenOf(family, "authorization_code")
	if v.FormAnswers {
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		io.WriteString(w, url.Values{"access_token": {access}, "token_type": {"bearer"}}.Encode())
		return
	}
	issuer.WriteJSON(w, http.StatusOK, map[string]string{"access_token": access, "token_type": "bearer"})
}

// IssueAccessToken returns a token as if a user had consented earlier, for
// VIADEO_ACCESS_TOKEN.
func (v *Viadeo) IssueAccessToken() string {
	return v.IssueAccessTokenOf(issuer.RandomToken("f-"), "seed")
}

// IssueAccessTokenOf issues a never-expiring token of family.
func (v *Viadeo) IssueAccessTokenOf(family, kind string) string {
	access := issuer.RandomToken("viadeo-")
	v.Grant(kind, family, "", access, "", issuer.Expiry(v.Now(), 0), issuer.Expiry(v.Now(), 0), false)
	return access
}

func (v *Viadeo) revoke(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != v.o.ClientID || q.Get("client_secret") != v.o.ClientSecret {
		oauthError(v.Issuer, w, http.StatusUnauthorized, "invalid_client", "bad client credentials")
		return
	}
	if !v.RevokeAccess(q.Get("access_token")) {
		oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_token", "unknown token")
		return
	}
	// Verbatim from the documentation; not JSON.
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"token_revoked"}`)
}

// api takes the token from the query string only: their SDK says the
// access_token must be in the URL, for every method.
func (v *Viadeo) api(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/oauth-provider/") {
		http.NotFound(w, r)
		return
	}
	if _, ok := v.CheckAccess(r.URL.Query().Get("access_token")); !ok {
		status := http.StatusUnauthorized
		if v.RefuseWith200 {
			status = http.StatusOK
		}
		issuer.WriteJSON(w, status, map[string]any{"error": map[string]any{"type": "Token revoked", "message": []string{"The access token is invalid or was revoked"}}})
		return
	}
	issuer.WriteEcho(w, r, "viadeo")
}
