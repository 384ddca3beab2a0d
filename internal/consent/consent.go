// Package consent is the authorization-code flow: a person approves access
// at the vendor, once, and the route keeps the tokens. It serves
// /oauth/{route}/start and /oauth/{route}/callback on a running sidecar, and
// runs the same flow from a terminal for the operator's login command.
package consent

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/admin"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/vendortext"
	"github.com/authsidecar/authsidecar/proxy"
)

// Route is what the consent flow needs of one route.
type Route struct {
	Name         string
	AuthorizeURL string
	ClientID     string
	RedirectURL  string
	Scope        string
	Exchanger    auth.Exchanger
	Keeper       Keeper
	// Accounts are the route's accounts, which consent can add (?account=
	// on /start, login --account); nil when the route cannot have them.
	Accounts Accounts
}

// Accounts are a route's vendor accounts as consent makes them.
type Accounts interface {
	// Pending is account name's keeper, whether or not it exists yet; an
	// error says the name is not one an account can have.
	Pending(name string) (Keeper, error)
	// Enlist makes account name exist once its token is stored.
	Enlist(ctx context.Context, name string) error
}

// keeper is the keeper that consent for account (empty: the route's own
// connection) stores into.
func (r *Route) keeper(account string) (Keeper, error) {
	if account == "" {
		return r.Keeper, nil
	}
	if r.Accounts == nil {
		return nil, fmt.Errorf("route %s has no accounts (they need an OAuth2 grant with refresh tokens)", r.Name)
	}
	return r.Accounts.Pending(account)
}

// what names the connection consent makes, for pages and messages.
func what(route *Route, account string) string {
	if account == "" {
		return "Route " + route.Name
	}
	return "Account " + account + " of route " + route.Name
}

// Keeper is the route's token keeper as the consent flow uses it.
type Keeper interface {
	Token(ctx context.Context) (auth.Token, error)
	Store(ctx context.Context, tok auth.Token) error
	// Connection names the stored token; StoreIfUnchanged stores only
	// while it is still the one named, atomically for the fleet.
	Connection(ctx context.Context) (string, error)
	StoreIfUnchanged(ctx context.Context, tok auth.Token, connection string) (bool, error)
}

// NewRoute checks that a route with a redirect URL can run the consent flow
// and describes it. Errors name the route's variable (prefix + setting).
func NewRoute(name, prefix string, s auth.Settings, grant auth.Grant, keeper Keeper) (*Route, error) {
	exchanger, ok := grant.(auth.Exchanger)
	switch {
	case !ok:
		return nil, fmt.Errorf("%sREDIRECT_URL: the consent flow needs an OAuth2 grant; route %s's grant cannot exchange a code (unset REDIRECT_URL or set GRANT=authorization_code)", prefix, name)
	case s.AuthorizeURL == "":
		return nil, fmt.Errorf("%sAUTHORIZE_URL: is required with REDIRECT_URL", prefix)
	case s.ClientID == "":
		return nil, fmt.Errorf("%sCLIENT_ID: is required with REDIRECT_URL", prefix)
	}
	return &Route{Name: name, AuthorizeURL: s.AuthorizeURL, ClientID: s.ClientID, RedirectURL: s.RedirectURL,
		Scope: s.Scope, Exchanger: exchanger, Keeper: keeper}, nil
}

// Flow serves /oauth/{route}/start and /oauth/{route}/callback: the
// one-time authorization code flow for routes whose vendor needs a person.
type Flow struct {
	lookup func(name string) (*Route, bool)
	// states keeps pending states, so consent started through one replica
	// can finish through another.
	states  cache.Store
	admin   *admin.Token
	log     *zap.Logger
	clock   clock.Clock
	pending pendingStates
	// accountsNeedAdmin: consent for an account needs ADMIN_TOKEN, and is
	// refused without one, because client keys restrict accounts to
	// tenants (a tenant must not connect its vendor account under a name
	// another tenant will use).
	accountsNeedAdmin atomic.Bool
}

// NewFlow returns the consent flow for the routes lookup finds: ok says the
// route exists, and its *Route is nil when it has no consent flow. With
// adminToken set, starting consent needs it; without, consent is refused
// for a route whose connection works, so nobody can swap the sidecar onto
// their own account.
func NewFlow(lookup func(name string) (*Route, bool), states cache.Store, adminToken *admin.Token, now clock.Clock, log *zap.Logger) *Flow {
	if log == nil {
		log = zap.NewNop()
	}
	return &Flow{lookup: lookup, states: states, admin: adminToken, log: log, clock: now,
		pending: pendingStates{byRoute: map[string][]time.Time{}}}
}

// RequireAdminForAccounts makes consent for an account need ADMIN_TOKEN:
// set when client keys restrict accounts to tenants.
func (c *Flow) RequireAdminForAccounts(on bool) { c.accountsNeedAdmin.Store(on) }

func (c *Flow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/oauth/")
	name, action, _ := strings.Cut(rest, "/")
	route, ok := c.lookup(name)
	switch {
	case !ok:
		proxy.WriteError(w, http.StatusNotFound, "unknown_route", "", fmt.Sprintf("no route %q", name))
		return
	case route == nil:
		proxy.WriteError(w, http.StatusNotFound, "no_consent_flow", name, fmt.Sprintf("route %q has no consent flow (it needs a REDIRECT_URL)", name))
		return
	}
	if r.Method != http.MethodGet {
		proxy.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", name, "use GET")
		return
	}
	switch action {
	case "start":
		c.start(w, r, route)
	case "callback":
		c.callback(w, r, route)
	default:
		proxy.WriteError(w, http.StatusNotFound, "not_found", name, "the consent flow has /start and /callback")
	}
}

func (c *Flow) start(w http.ResponseWriter, r *http.Request, route *Route) {
	q := r.URL.Query()
	account := q.Get("account")
	if q.Has("account") && !auth.ValidAccount(account) {
		page(w, http.StatusBadRequest, "Bad account name", "Account names are 1-64 characters of letters, digits and . _ @ -.")
		return
	}
	keeper, err := route.keeper(account)
	if err != nil {
		page(w, http.StatusNotFound, "No accounts", err.Error())
		return
	}
	operator := c.admin.Configured()
	if !operator && account != "" && c.accountsNeedAdmin.Load() {
		page(w, http.StatusForbidden, "Not allowed", "Client keys on this sidecar restrict accounts to tenants, so connecting an account needs the operator: set ADMIN_TOKEN on the sidecar and start again with it.")
		return
	}
	if operator {
		if !c.admin.Presented(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="authsidecar consent", charset="UTF-8"`)
			page(w, http.StatusUnauthorized, "Not allowed", "Starting consent ("+what(route, account)+") needs the operator's ADMIN_TOKEN (as the password).")
			return
		}
	}
	started := startedByOperator
	if !operator {
		if started, err = c.unconnected(r.Context(), route, account, keeper); err != nil {
			var f *failure
			if !errors.As(err, &f) {
				f = &failure{Status: http.StatusServiceUnavailable, Title: "Try again later", Detail: "The sidecar could not read the connection."}
			}
			page(w, f.Status, f.Title, f.Detail)
			return
		}
	}

	if !c.pending.admit(route.Name, c.clock.Now()) {
		page(w, http.StatusTooManyRequests, "Too many consents in progress",
			"Route "+route.Name+" has too many consents started and not finished. Try again in a few minutes.")
		return
	}
	state, err := newState()
	if err == nil {
		err = c.states.Set(r.Context(), stateKey(route.Name, state), encodeStarted(account, started), stateTTL)
	}
	if err != nil {
		c.log.Error("starting consent failed", zap.String("route", route.Name), zap.Error(err))
		page(w, http.StatusServiceUnavailable, "Try again later", "The sidecar could not record the consent request.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: stateCookie(route.Name), Value: state, Path: "/oauth/" + route.Name + "/",
		MaxAge: int(stateTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: strings.HasPrefix(route.RedirectURL, "https://"),
	})
	http.Redirect(w, r, authorizeURL(route, state), http.StatusFound)
}

// unconnected checks that the connection consent would make (the route's,
// or account's) does not work, so that anyone may make it, and returns the
// state's record of it.
func (c *Flow) unconnected(ctx context.Context, route *Route, account string, keeper Keeper) (string, error) {
	if _, err := keeper.Token(ctx); err == nil {
		return "", &failure{Status: http.StatusConflict, Title: "Already connected",
			Detail: what(route, account) + " has a working connection. To replace it, set ADMIN_TOKEN on the sidecar and start again with it."}
	} else if auth.KindOf(err) == auth.Unavailable {
		return "", &failure{Status: http.StatusServiceUnavailable, Title: "Try again later",
			Detail: "Cannot tell whether the connection works (" + what(route, account) + "): " + err.Error()}
	}
	connection, err := keeper.Connection(ctx)
	if err != nil {
		return "", err
	}
	return startedUnconnected + connection, nil
}

// authorizeURL is where a person is sent to consent: the vendor's authorize
// endpoint with client_id, redirect_uri, response_type=code and state.
func authorizeURL(route *Route, state string) string {
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

// failure is why a callback did not connect the route.
type failure struct {
	Status int
	Title  string
	Detail string
}

func (f *failure) Error() string { return f.Title + ": " + f.Detail }

// errReplaced is consent that would replace a connection made after it
// started, which only the operator may do.
var errReplaced = &failure{Status: http.StatusConflict, Title: "Already connected",
	Detail: "The route was connected while this consent was under way; that connection is kept. To replace it, the operator sets ADMIN_TOKEN and starts again with it."}

// finish checks a callback's vendor error and code, exchanges the code and
// stores the tokens, for the route's own connection or for account. The
// caller has already checked the state; started is what it recorded (see
// startedByOperator).
func finish(ctx context.Context, route *Route, account string, q url.Values, started string) error {
	if vendorErr := q.Get("error"); vendorErr != "" {
		detail := vendorErr
		if d := q.Get("error_description"); d != "" {
			detail += ": " + vendortext.Shorten(d, 200)
		}
		status := http.StatusBadRequest
		if vendorErr == "access_denied" {
			status = http.StatusForbidden
		}
		return &failure{Status: status, Title: "Not connected", Detail: "The vendor answered " + detail + "."}
	}
	code := q.Get("code")
	if code == "" {
		return &failure{Status: http.StatusBadRequest, Title: "Not connected", Detail: "The callback has no code."}
	}
	keeper, err := route.keeper(account)
	if err != nil {
		return &failure{Status: http.StatusNotFound, Title: "Not connected", Detail: err.Error()}
	}
	connection, guarded := strings.CutPrefix(started, startedUnconnected)
	if guarded {
		// Checked before the code is spent, and again atomically below.
		if now, err := keeper.Connection(ctx); err != nil || now != connection {
			return errReplaced
		}
	}
	tok, err := route.Exchanger.Exchange(ctx, code, route.RedirectURL)
	if err != nil {
		return &failure{Status: http.StatusBadGateway, Title: "Not connected", Detail: "Exchanging the code failed: " + err.Error()}
	}
	stored := true
	if guarded {
		stored, err = keeper.StoreIfUnchanged(ctx, tok, connection)
	} else {
		err = keeper.Store(ctx, tok)
	}
	if err != nil {
		return &failure{Status: http.StatusServiceUnavailable, Title: "Not connected", Detail: "Storing the tokens failed: " + err.Error()}
	}
	if !stored {
		return errReplaced
	}
	if account != "" {
		if err := route.Accounts.Enlist(ctx, account); err != nil {
			return &failure{Status: http.StatusServiceUnavailable, Title: "Not connected", Detail: "Recording the account failed: " + err.Error()}
		}
	}
	return nil
}

func (c *Flow) callback(w http.ResponseWriter, r *http.Request, route *Route) {
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
	key := stateKey(route.Name, state)
	started, err := c.states.Get(r.Context(), key)
	deleted := false
	if err == nil {
		deleted, err = c.states.CompareAndDelete(r.Context(), key, started)
	}
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		page(w, http.StatusServiceUnavailable, "Try again later", "The sidecar could not check the consent request.")
		return
	}
	if !deleted {
		page(w, http.StatusBadRequest, "Link used or expired", "This consent was already completed or has expired. Start again at /oauth/"+route.Name+"/start.")
		return
	}
	account, recorded := decodeStarted(started)
	if err := finish(r.Context(), route, account, q, recorded); err != nil {
		var f *failure
		if !errors.As(err, &f) {
			f = &failure{Status: http.StatusInternalServerError, Title: "Not connected", Detail: err.Error()}
		}
		c.log.Warn("consent failed", zap.String("route", route.Name), zap.String("account", account), zap.String("reason", f.Detail))
		page(w, f.Status, f.Title, f.Detail)
		return
	}
	c.log.Info("consent given; connected", zap.String("route", route.Name), zap.String("account", account))
	page(w, http.StatusOK, "Connected", what(route, account)+" is connected. You can close this window.")
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
