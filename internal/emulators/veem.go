package emulators

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/issuer"
)

// Veem emulates api.veem.com (and the sandbox): HTTP Basic client
// authentication with a form body and scope=all; the refresh token in the
// query string of the refresh request, never in its body; and an API where
// every call's X-Request-Id may be used once.
type Veem struct {
	*issuer.Issuer
	o Options
	// ClientCredentialsWithoutRefresh leaves the refresh token out of
	// client-credentials answers, as Veem may.
	ClientCredentialsWithoutRefresh bool

	idsMu      sync.Mutex
	requestIDs map[string]bool
}

// NewVeem returns the emulator.
func NewVeem(o Options) *Veem {
	if o.AccessLifetime == 0 {
		o.AccessLifetime = 31535999 * time.Second
	}
	return &Veem{Issuer: issuer.New(o.Now, true), o: o, requestIDs: map[string]bool{}}
}

func (v *Veem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/oauth/authorize":
		authorize(v.Issuer, v.o, w, r)
	case r.URL.Path == "/oauth/token":
		v.token(w, r)
	case strings.HasPrefix(r.URL.Path, "/veem/"):
		v.api(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (v *Veem) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(v.Issuer, w, http.StatusMethodNotAllowed, "invalid_request", "token requests are POST")
		return
	}
	id, secret, ok := issuer.BasicClient(r)
	if !ok {
		oauthError(v.Issuer, w, http.StatusUnauthorized, "invalid_client", "client authentication must be HTTP Basic")
		return
	}
	if id != v.o.ClientID || secret != v.o.ClientSecret {
		oauthError(v.Issuer, w, http.StatusUnauthorized, "invalid_client", "bad client credentials")
		return
	}
	p, err := issuer.FormParams(r)
	if err != nil {
		oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if p.Has("client_secret") {
		oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_request", "client_secret must not be in the body")
		return
	}
	grant := p.Get("grant_type")
	var family string
	switch grant {
	case "client_credentials", "authorization_code":
		if p.Get("scope") != "all" {
			oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_scope", "scope must be all")
			return
		}
		family = issuer.RandomToken("f-")
		if grant == "authorization_code" {
			var why string
			if family, why = v.UseCode(p.Get("code"), p.Get("redirect_uri")); why != "" {
				oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_grant", why)
				return
			}
		}
	case "refresh_token":
		if p.Has("refresh_token") {
			oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_request", "the refresh token goes in the query string, not the body")
			return
		}
		rec, why := v.UseRefresh(r.URL.Query().Get("refresh_token"))
		if why != "" {
			oauthError(v.Issuer, w, http.StatusBadRequest, "invalid_grant", why)
			return
		}
		family = rec.Family
	default:
		oauthError(v.Issuer, w, http.StatusBadRequest, "unsupported_grant_type", grant)
		return
	}
	now := v.Now()
	exp := now.Add(v.o.AccessLifetime)
	access, refresh := issuer.RandomToken("veem-at-"), issuer.RandomToken("veem-rt-")
	withRefresh := !(grant == "client_credentials" && v.ClientCredentialsWithoutRefresh)
	v.Grant(grant, family, "", access, refresh, exp, issuer.Expiry(now, v.o.RefreshLifetime), withRefresh)
	answer := map[string]any{
		"access_token": access, "token_type": "bearer", "expires_in": int(v.o.AccessLifetime.Seconds()),
		"scope": "all", "account_id": 1, "user_id": 2,
	}
	if withRefresh {
		answer["refresh_token"] = refresh
	}
	issuer.WriteJSON(w, http.StatusOK, answer)
}

func (v *Veem) api(w http.ResponseWriter, r *http.Request) {
	if _, ok := v.CheckAccess(issuer.Bearer(r)); !ok {
		issuer.WriteJSON(w, http.StatusUnauthorized, map[string]any{"code": 401, "error": "invalid_token", "message": "Invalid token"})
		return
	}
	// An id is the client's promise that the call is new: a call refused
	// with 401 did nothing, so its id is not spent, but an accepted one is.
	if id := r.Header.Get("X-Request-Id"); id != "" {
		v.idsMu.Lock()
		seen := v.requestIDs[id]
		v.requestIDs[id] = true
		v.idsMu.Unlock()
		if seen {
			issuer.WriteJSON(w, http.StatusConflict, map[string]any{"code": 409, "error": "duplicate_request", "message": "X-Request-Id already used"})
			return
		}
	}
	issuer.WriteEcho(w, r, "veem")
}
