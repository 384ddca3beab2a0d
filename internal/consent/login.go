package consent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Login runs the consent flow from a terminal: it prints the authorize URL,
// takes the callback on the loopback address of the route's REDIRECT_URL,
// exchanges the code and stores the tokens: the route's own connection, or
// with account one of its accounts (made if new). prefix is the route's variable
// prefix, for messages; kept names the persistent store the tokens went to.
// Without one (kept empty), the store of this process ends with it, so Login
// prints the variable that keeps the connection instead.
func Login(ctx context.Context, route *Route, account, prefix, kept string, out io.Writer) error {
	keeper, err := route.keeper(account)
	if err != nil {
		return err
	}
	if account != "" && kept == "" {
		return errors.New("accounts live in the token store, which this process would forget: set REDIS_URL or TOKEN_STORE_PATH as the sidecar has them")
	}
	redirect, err := url.Parse(route.RedirectURL)
	if err != nil {
		return fmt.Errorf("%sREDIRECT_URL: %w", prefix, err)
	}
	if ip := net.ParseIP(redirect.Hostname()); redirect.Scheme != "http" || (redirect.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return fmt.Errorf("login takes the callback on this machine: %sREDIRECT_URL must be http://localhost:PORT/... (registered with the vendor); for another redirect URL use /oauth/%s/start on a running sidecar", prefix, route.Name)
	}
	ln, err := net.Listen("tcp", redirect.Host)
	if err != nil {
		return fmt.Errorf("listening for the callback on %s: %w", redirect.Host, err)
	}
	state, err := newState()
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
		// The operator runs login: it may replace a connection.
		err := finish(r.Context(), route, account, r.URL.Query(), startedByOperator)
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

	fmt.Fprintf(out, "Open this URL in a browser and approve access (%s):\n\n  %s\n\nWaiting for the callback on %s …\n", what(route, account), authorizeURL(route, state), route.RedirectURL)
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the callback: %w", ctx.Err())
	}
	if err != nil {
		return err
	}
	tok, err := keeper.Token(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nConnected: %s.\n", what(route, account))
	if kept != "" {
		fmt.Fprintf(out, "The tokens are kept in %s; a sidecar started with it uses them (and keeps their rotations).\n", kept)
		return nil
	}
	fmt.Fprintf(out, "This process's token store ends with it; to keep the connection, give the sidecar:\n\n")
	if tok.RefreshToken != "" {
		fmt.Fprintf(out, "  %sREFRESH_TOKEN=%s\n", prefix, tok.RefreshToken)
	} else {
		fmt.Fprintf(out, "  %sACCESS_TOKEN=%s\n", prefix, tok.AccessToken)
	}
	return nil
}
