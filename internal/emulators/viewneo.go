package emulators

import (
	"net/http"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/internal/issuer"
)

// Viewneo emulates cloud.viewneo.com: a Laravel Passport server. Token
// requests must be JSON with the client credentials in the body; refresh
// tokens are single-use; access tokens are JWTs; an API call with a bad
// token answers 401 {"message":"Unauthenticated."}.
type Viewneo struct {
	*issuer.Issuer
	o Options
}

// NewViewneo returns the emulator; serve it with any http.Server.
func NewViewneo(o Options) *Viewneo {
	if o.AccessLifetime == 0 {
		o.AccessLifetime = 1296000 * time.Second // 15 days, as documented
	}
	return &Viewneo{Issuer: issuer.New(o.Now, true), o: o}
}

func (v *Viewneo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/oauth/authorize":
		authorize(v.Issuer, v.o, w, r)
	case r.URL.Path == "/oauth/token":
		v.token(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		issued, ok := v.CheckAccess(issuer.Bearer(r))
		if !ok {
			issuer.WriteJSON(w, http.StatusUnauthorized, map[string]string{"message": "Unauthenticated."})
			return
		}
		user, _ := strings.CutPrefix(issued.Family, userFamily)
		if user == issued.Family {
			user = ""
		}
		issuer.WriteEchoFor(w, r, "viewneo", user)
	default:
		http.NotFound(w, r)
	}
}

// passportError is Laravel Passport's error shape.
func (v *Viewneo) passportError(w http.ResponseWriter, status int, code, why string) {
	v.Refuse(code + ": " + why)
	issuer.WriteJSON(w, status, map[string]string{"error": code, "error_description": why, "hint": "", "message": why})
}

func (v *Viewneo) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		v.passportError(w, http.StatusMethodNotAllowed, "invalid_request", "token requests are POST")
		return
	}
	if r.Header.Get("Authorization") != "" {
		v.passportError(w, http.StatusBadRequest, "invalid_request", "client credentials go in the JSON body, not an Authorization header")
		return
	}
	p, err := issuer.JSONParams(r)
	if err != nil {
		v.passportError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if p["client_id"] != v.o.ClientID || p["client_secret"] != v.o.ClientSecret {
		v.passportError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	var family string
	switch p["grant_type"] {
	case "authorization_code":
		var why string
		if family, why = v.UseCode(p["code"], p["redirect_uri"]); why != "" {
			v.passportError(w, http.StatusBadRequest, "invalid_grant", why)
			return
		}
	case "refresh_token":
		rec, why := v.UseRefresh(p["refresh_token"])
		if why != "" {
			v.passportError(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid: "+why)
			return
		}
		family = rec.Family
	default:
		v.passportError(w, http.StatusBadRequest, "unsupported_grant_type", "grant "+p["grant_type"]+" is not offered")
		return
	}
	v.issue(w, p["grant_type"], family)
}

func (v *Viewneo) issue(w http.ResponseWriter, kind, family string) {
	now := v.Now()
	exp := now.Add(v.o.AccessLifetime)
	access, refresh := issuer.JWT(exp, map[string]any{"aud": v.o.ClientID}), issuer.RandomToken("def50200")
	v.Grant(kind, family, "", access, refresh, exp, issuer.Expiry(now, v.o.RefreshLifetime), true)
	issuer.WriteJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": int(v.o.AccessLifetime.Seconds()),
		"access_token": access, "refresh_token": refresh,
	})
}

// IssueRefreshToken returns a refresh token as if a user had consented
// earlier, for VIEWNEO_REFRESH_TOKEN.
func (v *Viewneo) IssueRefreshToken() string { return v.issueRefresh(issuer.RandomToken("f-")) }

// IssueRefreshTokenFor is IssueRefreshToken for a named user, whom the API
// then names in its answers (to show whose account a call used).
func (v *Viewneo) IssueRefreshTokenFor(user string) string { return v.issueRefresh(userFamily + user) }

// userFamily marks the token families of named users.
const userFamily = "user:"

func (v *Viewneo) issueRefresh(family string) string {
	rt := issuer.RandomToken("def50200")
	v.AddRefresh(rt, family, issuer.Expiry(v.Now(), v.o.RefreshLifetime))
	return rt
}
