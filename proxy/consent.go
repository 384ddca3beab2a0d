package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
)

// ConsentRoute is what the consent flow needs of one route.
type ConsentRoute struct {
	Name         string
	AuthorizeURL string
	ClientID     string
	RedirectURL  string
	Scope        string
	Exchanger    auth.Exchanger
	Keeper       ConsentKeeper
}

// ConsentKeeper is the route's keeper as the consent flow uses it.
type ConsentKeeper interface {
	Token(ctx context.Context) (auth.Token, error)
	Store(ctx context.Context, tok auth.Token) error
}

// Consent serves /oauth/{route}/start and /oauth/{route}/callback: the
// one-time authorization code flow for routes whose vendor needs a person.
type Consent struct {
	routes map[string]ConsentRoute
	// states keeps pending states, so consent started through one replica
	// can finish through another.
	states     cache.Store
	adminToken string
	log        *zap.Logger
}

// StateTTL is how long a consent started has to finish.
const StateTTL = 10 * time.Minute

// NewConsent returns the consent flow for routes. With adminToken set,
// starting consent needs it; without, consent is refused for a route whose
// connection works, so nobody can swap the sidecar onto their own account.
func NewConsent(routes []ConsentRoute, states cache.Store, adminToken string, log *zap.Logger) *Consent {
	c := &Consent{routes: map[string]ConsentRoute{}, states: states, adminToken: adminToken, log: log}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	for _, r := range routes {
		c.routes[r.Name] = r
	}
	return c
}

func (c *Consent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/oauth/")
	name, action, _ := strings.Cut(rest, "/")
	route, ok := c.routes[name]
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown_route", Message: fmt.Sprintf("no consent flow for route %q (it needs a REDIRECT_URL)", name)})
		return
	}
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Route: name, Message: "use GET"})
		return
	}
	switch action {
	case "start":
		c.start(w, r, route)
	case "callback":
		c.callback(w, r, route)
	default:
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Route: name, Message: "the consent flow has /start and /callback"})
	}
}

func stateCookie(route string) string { return "authsidecar_consent_" + route }

func stateKey(route, state string) string {
	sum := sha256.Sum256([]byte(state))
	return "consent-state:" + route + ":" + hex.EncodeToString(sum[:])
}

func (c *Consent) start(w http.ResponseWriter, r *http.Request, route ConsentRoute) {
	if c.adminToken != "" {
		if !c.adminPresented(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="authsidecar consent", charset="UTF-8"`)
			page(w, http.StatusUnauthorized, "Not allowed", "Starting consent for "+route.Name+" needs the operator's ADMIN_TOKEN (as the password).")
			return
		}
	} else if _, err := route.Keeper.Token(r.Context()); err == nil {
		page(w, http.StatusConflict, "Already connected",
			"Route "+route.Name+" has a working connection. To replace it, set ADMIN_TOKEN on the sidecar and start again with it.")
		return
	} else if auth.KindOf(err) == auth.Unavailable {
		page(w, http.StatusServiceUnavailable, "Try again later",
			"Cannot tell whether route "+route.Name+"'s connection works: "+err.Error())
		return
	}

	state, err := NewState()
	if err == nil {
		err = c.states.Set(r.Context(), stateKey(route.Name, state), []byte("pending"), StateTTL)
	}
	if err != nil {
		c.log.Error("starting consent failed", zap.String("route", route.Name), zap.Error(err))
		page(w, http.StatusServiceUnavailable, "Try again later", "The sidecar could not record the consent request.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: stateCookie(route.Name), Value: state, Path: "/oauth/" + route.Name + "/",
		MaxAge: int(StateTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: strings.HasPrefix(route.RedirectURL, "https://"),
	})
	http.Redirect(w, r, AuthorizeURL(route, state), http.StatusFound)
}

func (c *Consent) adminPresented(r *http.Request) bool {
	presented := r.URL.Query().Get("admin_token")
	if _, pass, ok := r.BasicAuth(); ok {
		presented = pass
	}
	return presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(c.adminToken)) == 1
}

// AuthorizeURL is where a person is sent to consent: the vendor's authorize
// endpoint with client_id, redirect_uri, response_type=code and state.
func AuthorizeURL(route ConsentRoute, state string) string {
	u, err := url.Parse(route.AuthorizeURL)
	if err != nil {
		return route.AuthorizeURL
	}
	q := u.Query()
	q.Set("client_id", route.ClientID)
	q.Set("redirect_uri", route.RedirectURL)
	q.Set("response_type", "code")
	q.Set("state", state)
	if route.Scope != "" {
		q.Set("scope", route.Scope)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// NewState makes a consent state: 32 random bytes, unguessable and
// single-use. The consent endpoints and `authsidecar login` both use it.
func NewState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ConsentFailure is why a callback did not connect the route.
type ConsentFailure struct {
	Status int
	Title  string
	Detail string
}

func (f *ConsentFailure) Error() string { return f.Title + ": " + f.Detail }

// FinishConsent checks a callback's vendor error and code, exchanges the code
// and stores the tokens. The caller has already checked the state.
func FinishConsent(ctx context.Context, route ConsentRoute, q url.Values) error {
	if vendorErr := q.Get("error"); vendorErr != "" {
		detail := vendorErr
		if d := q.Get("error_description"); d != "" {
			detail += ": " + shortText(d)
		}
		status := http.StatusBadRequest
		if vendorErr == "access_denied" {
			status = http.StatusForbidden
		}
		return &ConsentFailure{Status: status, Title: "Not connected", Detail: "The vendor answered " + detail + "."}
	}
	code := q.Get("code")
	if code == "" {
		return &ConsentFailure{Status: http.StatusBadRequest, Title: "Not connected", Detail: "The callback has no code."}
	}
	tok, err := route.Exchanger.Exchange(ctx, code, route.RedirectURL)
	if err != nil {
		return &ConsentFailure{Status: http.StatusBadGateway, Title: "Not connected", Detail: "Exchanging the code failed: " + err.Error()}
	}
	if err := route.Keeper.Store(ctx, tok); err != nil {
		return &ConsentFailure{Status: http.StatusServiceUnavailable, Title: "Not connected", Detail: "Storing the tokens failed: " + err.Error()}
	}
	return nil
}

func (c *Consent) callback(w http.ResponseWriter, r *http.Request, route ConsentRoute) {
	q := r.URL.Query()
	// The state must be the one this browser was given, and unused: a
	// forged state fails the first test, a replayed one the second.
	state := q.Get("state")
	cookie, err := r.Cookie(stateCookie(route.Name))
	http.SetCookie(w, &http.Cookie{Name: stateCookie(route.Name), Path: "/oauth/" + route.Name + "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(state)) != 1 {
		c.log.Warn("consent callback with a state this browser was not given", zap.String("route", route.Name))
		page(w, http.StatusBadRequest, "State mismatch", "This callback does not belong to a consent started in this browser. Start again at /oauth/"+route.Name+"/start.")
		return
	}
	deleted, err := c.states.CompareAndDelete(r.Context(), stateKey(route.Name, state), []byte("pending"))
	if err != nil {
		page(w, http.StatusServiceUnavailable, "Try again later", "The sidecar could not check the consent request.")
		return
	}
	if !deleted {
		page(w, http.StatusBadRequest, "Link used or expired", "This consent was already completed or has expired. Start again at /oauth/"+route.Name+"/start.")
		return
	}
	if err := FinishConsent(r.Context(), route, q); err != nil {
		var f *ConsentFailure
		if !errors.As(err, &f) {
			f = &ConsentFailure{Status: http.StatusInternalServerError, Title: "Not connected", Detail: err.Error()}
		}
		c.log.Warn("consent failed", zap.String("route", route.Name), zap.String("reason", f.Detail))
		page(w, f.Status, f.Title, f.Detail)
		return
	}
	c.log.Info("consent given; route connected", zap.String("route", route.Name))
	page(w, http.StatusOK, "Connected", "Route "+route.Name+" is connected. You can close this window.")
}

func shortText(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authsidecar: {{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Detail}}</p></body></html>
`))

func page(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct{ Title, Detail string }{title, detail})
}
