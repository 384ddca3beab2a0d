package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/proxy"
)

// PrintToken writes a current access token of route, for a tool that can
// only take one.
func (a *App) PrintToken(ctx context.Context, route string, w io.Writer) error {
	k, ok := a.keepers[route]
	if !ok {
		return a.unknownRoute(route)
	}
	tok, err := k.Token(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, tok.AccessToken)
	return err
}

// Revoke revokes route's current token at the vendor and forgets it.
func (a *App) Revoke(ctx context.Context, route string) error {
	k, ok := a.keepers[route]
	if !ok {
		return a.unknownRoute(route)
	}
	revoker, ok := a.grants[route].(auth.Revoker)
	if !ok {
		return fmt.Errorf("route %s: its grant has no revocation", route)
	}
	tok, err := k.Token(ctx)
	if err != nil {
		return fmt.Errorf("route %s: getting the token to revoke: %w", route, err)
	}
	if err := revoker.Revoke(ctx, tok); err != nil {
		return fmt.Errorf("route %s: %w", route, err)
	}
	k.Invalidate(tok.AccessToken)
	return k.Forget(ctx)
}

// Login runs the consent flow from a terminal: it prints the authorize URL,
// takes the callback on the loopback address of the route's REDIRECT_URL,
// exchanges the code and stores the tokens. The store of this process ends
// with it, so Login also prints the variable that keeps the connection.
func (a *App) Login(ctx context.Context, route string, out io.Writer) error {
	cr, ok := a.consent[route]
	if !ok {
		if _, exists := a.keepers[route]; !exists {
			return a.unknownRoute(route)
		}
		return fmt.Errorf("route %s has no consent flow: set %sREDIRECT_URL (and the client's credentials)", route, config.RoutePrefix(route))
	}
	redirect, err := url.Parse(cr.RedirectURL)
	if err != nil {
		return fmt.Errorf("%sREDIRECT_URL: %w", config.RoutePrefix(route), err)
	}
	if ip := net.ParseIP(redirect.Hostname()); redirect.Scheme != "http" || (redirect.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return fmt.Errorf("login takes the callback on this machine: %sREDIRECT_URL must be http://localhost:PORT/... (registered with the vendor); for another redirect URL use /oauth/%s/start on a running sidecar", config.RoutePrefix(route), route)
	}
	ln, err := net.Listen("tcp", redirect.Host)
	if err != nil {
		return fmt.Errorf("listening for the callback on %s: %w", redirect.Host, err)
	}
	state, err := proxy.NewState()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != redirect.Path {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("state") != state {
			http.Error(w, "state mismatch: this callback is not from the login in progress", http.StatusBadRequest)
			return
		}
		err := proxy.FinishConsent(r.Context(), cr, r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		} else {
			io.WriteString(w, "Connected. You can close this window and return to the terminal.\n")
		}
		select {
		case done <- err:
		default:
		}
	})}
	go srv.Serve(ln)
	defer func() {
		// Shutdown, not Close: the callback's page must reach the browser
		// before the listener goes.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	fmt.Fprintf(out, "Open this URL in a browser and approve access for route %s:\n\n  %s\n\nWaiting for the callback on %s …\n", route, proxy.AuthorizeURL(cr, state), cr.RedirectURL)
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the callback: %w", ctx.Err())
	}
	if err != nil {
		return err
	}
	tok, err := a.keepers[route].Token(ctx)
	if err != nil {
		return err
	}
	prefix := config.RoutePrefix(route)
	fmt.Fprintf(out, "\nConnected route %s.\n", route)
	fmt.Fprintf(out, "This process's token store ends with it; to keep the connection, give the sidecar:\n\n")
	if tok.RefreshToken != "" {
		fmt.Fprintf(out, "  %sREFRESH_TOKEN=%s\n", prefix, tok.RefreshToken)
	} else {
		fmt.Fprintf(out, "  %sACCESS_TOKEN=%s\n", prefix, tok.AccessToken)
	}
	return nil
}

func (a *App) unknownRoute(route string) error {
	names := make([]string, 0, len(a.keepers))
	for n := range a.keepers {
		names = append(names, n)
	}
	return fmt.Errorf("no route %q (configured: %v)", route, names)
}
