package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/proxy"
)

// Accounts is what the API does to a route's accounts: the operations the
// accounts commands run.
type Accounts interface {
	ListAccounts(ctx context.Context, route string) ([]string, error)
	AddAccount(ctx context.Context, route, name, token string, accessOnly bool) error
	RevokeAccount(ctx context.Context, route, name string) (revoked bool, err error)
}

// API serves the operator's HTTP API, every call with the admin token:
//
//	GET    /admin/routes/ROUTE/accounts        the route's accounts
//	PUT    /admin/routes/ROUTE/accounts/NAME   add (or replace) an account from
//	                                           {"refresh_token": "..."} or {"access_token": "..."}
//	DELETE /admin/routes/ROUTE/accounts/NAME   revoke it at the vendor and remove it
type API struct {
	Token    *Token
	Accounts Accounts
}

// maxBody bounds an account's token document.
const maxBody = 64 << 10

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.Token.Configured() {
		proxy.WriteError(w, http.StatusForbidden, "admin_disabled", "", "the admin API needs ADMIN_TOKEN set on the sidecar")
		return
	}
	if !a.Token.Presented(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="authsidecar admin", charset="UTF-8"`)
		proxy.WriteError(w, http.StatusUnauthorized, "admin_token_required", "", "present the operator's ADMIN_TOKEN in the "+TokenHeader+" header")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/admin/"), "/")
	if len(parts) < 3 || parts[0] != "routes" || parts[2] != "accounts" || len(parts) > 4 {
		proxy.WriteError(w, http.StatusNotFound, "not_found", "", "the admin API has /admin/routes/ROUTE/accounts[/NAME]")
		return
	}
	routeName := parts[1]
	if len(parts) == 3 {
		if r.Method != http.MethodGet {
			proxy.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", routeName, "use GET")
			return
		}
		names, err := a.Accounts.ListAccounts(r.Context(), routeName)
		if err != nil {
			fail(w, routeName, err)
			return
		}
		proxy.WriteJSON(w, http.StatusOK, map[string]any{"route": routeName, "accounts": append([]string{}, names...)})
		return
	}
	name := parts[3]
	if !auth.ValidAccount(name) {
		proxy.WriteError(w, http.StatusBadRequest, "bad_account", routeName, "account names are 1-64 characters of letters, digits and . _ @ -")
		return
	}
	switch r.Method {
	case http.MethodPut:
		a.add(w, r, routeName, name)
	case http.MethodDelete:
		revoked, err := a.Accounts.RevokeAccount(r.Context(), routeName, name)
		if err != nil {
			fail(w, routeName, err)
			return
		}
		proxy.WriteJSON(w, http.StatusOK, map[string]any{"route": routeName, "account": name, "removed": true, "revoked": revoked})
	default:
		proxy.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", routeName, "use PUT or DELETE")
	}
}

// add imports an account from the token in the request's body.
func (a *API) add(w http.ResponseWriter, r *http.Request, routeName, name string) {
	var body struct {
		RefreshToken string `json:"refresh_token"`
		AccessToken  string `json:"access_token"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		proxy.WriteError(w, http.StatusBadRequest, "bad_request_body", routeName, `the body must be {"refresh_token": "..."} or {"access_token": "..."}`)
		return
	}
	if (body.RefreshToken == "") == (body.AccessToken == "") {
		proxy.WriteError(w, http.StatusBadRequest, "bad_request_body", routeName, "give exactly one of refresh_token and access_token")
		return
	}
	token, accessOnly := body.RefreshToken, false
	if token == "" {
		token, accessOnly = body.AccessToken, true
	}
	if err := a.Accounts.AddAccount(r.Context(), routeName, name, token, accessOnly); err != nil {
		fail(w, routeName, err)
		return
	}
	proxy.WriteJSON(w, http.StatusOK, map[string]any{"route": routeName, "account": name, "added": true})
}

// fail answers an operation that failed, by why.
func fail(w http.ResponseWriter, routeName string, err error) {
	var unknownRoute *proxy.UnknownRouteError
	var unknownAccount *auth.UnknownAccountError
	switch {
	case errors.As(err, &unknownRoute):
		proxy.WriteError(w, http.StatusNotFound, "unknown_route", routeName, err.Error())
	case errors.As(err, &unknownAccount):
		proxy.WriteError(w, http.StatusNotFound, "unknown_account", routeName, err.Error())
	case errors.Is(err, auth.ErrNoAccounts):
		proxy.WriteError(w, http.StatusConflict, "no_accounts", routeName, err.Error())
	default:
		proxy.WriteError(w, http.StatusServiceUnavailable, "unavailable", routeName, fmt.Sprintf("route %s: %v", routeName, err))
	}
}
