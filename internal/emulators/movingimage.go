package emulators

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/internal/issuer"
)

// Movingimage emulates api.video-cdn.net's VideoManager Pro: the legacy JSON
// login answering in camelCase with no expiry (the tokens are JWTs: access
// 5 minutes, refresh 1 hour), the refresh per VideoManager, the OpenID
// Connect password grant of login.movingimage.com, and an API whose tokens
// are bound to one VideoManager. Failures answer an HTML error page, as the
// real one does.
type Movingimage struct {
	*issuer.Issuer
	o Options
	// VideoManagers the account can use; the login picks the first.
	VideoManagers []string
}

// NewMovingimage returns the emulator.
func NewMovingimage(o Options) *Movingimage {
	if o.AccessLifetime == 0 {
		o.AccessLifetime = 5 * time.Minute
	}
	if o.RefreshLifetime == 0 {
		o.RefreshLifetime = time.Hour
	}
	return &Movingimage{Issuer: issuer.New(o.Now, true), o: o, VideoManagers: []string{"1001", "1002"}}
}

// OIDCPath is where the OpenID Connect token endpoint is served.
const OIDCPath = "/auth/realms/platform/protocol/openid-connect/token"

func (m *Movingimage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/vms/auth/login":
		m.login(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/vms/auth/refresh/"):
		m.refresh(w, r, strings.TrimPrefix(r.URL.Path, "/v1/vms/auth/refresh/"))
	case r.URL.Path == OIDCPath:
		m.oidc(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/vms"):
		m.api(w, r)
	default:
		http.NotFound(w, r)
	}
}

// htmlError is how movingimage fails: a page, not JSON.
func (m *Movingimage) htmlError(w http.ResponseWriter, status int, why string) {
	m.Refuse(why)
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, "<!doctype html><html><head><title>Error</title></head><body>"+http.StatusText(status)+"</body></html>")
}

func (m *Movingimage) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		m.htmlError(w, http.StatusMethodNotAllowed, "login is a POST")
		return
	}
	p, err := issuer.JSONParams(r)
	if err != nil {
		m.htmlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(p) != 2 || p["username"] == "" {
		m.htmlError(w, http.StatusBadRequest, `the login body is exactly {"username","password"}`)
		return
	}
	if p["username"] != m.o.Username || p["password"] != m.o.Password {
		m.htmlError(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	m.issueLegacy(w, "login", issuer.RandomToken("f-"), m.VideoManagers[0])
}

func (m *Movingimage) refresh(w http.ResponseWriter, r *http.Request, videoManager string) {
	if r.Method != http.MethodPost {
		m.htmlError(w, http.StatusMethodNotAllowed, "refresh is a POST")
		return
	}
	p, err := issuer.JSONParams(r)
	if err != nil {
		m.htmlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(p) != 1 || p["refreshToken"] == "" {
		m.htmlError(w, http.StatusBadRequest, `the refresh body is exactly {"refreshToken"}`)
		return
	}
	if !slices.Contains(m.VideoManagers, videoManager) {
		m.htmlError(w, http.StatusForbidden, "no access to VideoManager "+videoManager)
		return
	}
	rec, why := m.UseRefresh(p["refreshToken"])
	if why != "" {
		m.htmlError(w, http.StatusUnauthorized, why)
		return
	}
	m.issueLegacy(w, "refresh_token", rec.Family, videoManager)
}

func (m *Movingimage) issueLegacy(w http.ResponseWriter, kind, family, videoManager string) {
	now := m.Now()
	accessExp, refreshExp := now.Add(m.o.AccessLifetime), now.Add(m.o.RefreshLifetime)
	access, refresh := issuer.JWT(accessExp, map[string]any{"vm": videoManager}), issuer.JWT(refreshExp, map[string]any{"typ": "Refresh"})
	m.Grant(kind, family, videoManager, access, refresh, accessExp, refreshExp, true)
	list := make([]map[string]any, 0, len(m.VideoManagers))
	for _, id := range m.VideoManagers {
		list = append(list, map[string]any{"id": id, "name": "VideoManager " + id})
	}
	issuer.WriteJSON(w, http.StatusOK, map[string]any{
		"accessToken": access, "refreshToken": refresh,
		"videoManagerList": list, "validForVideoManager": videoManager,
	})
}

// oidc is the Keycloak token endpoint: form body, public client anonymous.
func (m *Movingimage) oidc(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(m.Issuer, w, http.StatusMethodNotAllowed, "invalid_request", "token requests are POST")
		return
	}
	p, err := issuer.FormParams(r)
	if err != nil {
		oauthError(m.Issuer, w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if p.Get("client_id") != "anonymous" || p.Has("client_secret") || r.Header.Get("Authorization") != "" {
		oauthError(m.Issuer, w, http.StatusUnauthorized, "invalid_client", "the public client is client_id=anonymous, without a secret")
		return
	}
	var family string
	switch p.Get("grant_type") {
	case "password":
		if !slices.Contains(strings.Fields(p.Get("scope")), "openid") {
			oauthError(m.Issuer, w, http.StatusBadRequest, "invalid_scope", "scope must include openid")
			return
		}
		if p.Get("username") != m.o.Username || p.Get("password") != m.o.Password {
			oauthError(m.Issuer, w, http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
			return
		}
		family = issuer.RandomToken("f-")
	case "refresh_token":
		rec, why := m.UseRefresh(p.Get("refresh_token"))
		if why != "" {
			oauthError(m.Issuer, w, http.StatusBadRequest, "invalid_grant", why)
			return
		}
		family = rec.Family
	default:
		oauthError(m.Issuer, w, http.StatusBadRequest, "unsupported_grant_type", p.Get("grant_type"))
		return
	}
	now := m.Now()
	accessExp, refreshExp := now.Add(m.o.AccessLifetime), now.Add(m.o.RefreshLifetime)
	access, refresh := issuer.JWT(accessExp, nil), issuer.JWT(refreshExp, map[string]any{"typ": "Refresh"})
	m.Grant(p.Get("grant_type"), family, "", access, refresh, accessExp, refreshExp, true)
	issuer.WriteJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "expires_in": int(m.o.AccessLifetime.Seconds()),
		"refresh_expires_in": int(m.o.RefreshLifetime.Seconds()), "refresh_token": refresh,
		"token_type": "Bearer", "id_token": issuer.JWT(accessExp, nil), "scope": "openid",
	})
}

// api serves /v1/vms (the list) and /v1/vms/{id}/...; a legacy token works
// only for the VideoManager it was issued for.
func (m *Movingimage) api(w http.ResponseWriter, r *http.Request) {
	rec, ok := m.CheckAccess(issuer.Bearer(r))
	if !ok {
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "<!doctype html><html><head><title>Error</title></head><body>Unauthorized</body></html>")
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/vms"), "/")
	if id, _, _ := strings.Cut(rest, "/"); id != "" && rec.Binding != "" && id != rec.Binding {
		issuer.WriteJSON(w, http.StatusForbidden, map[string]string{"message": "token is valid for VideoManager " + rec.Binding})
		return
	}
	issuer.WriteEcho(w, r, "movingimage")
}
