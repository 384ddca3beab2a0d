// Package emulators are local stand-ins for the four vendors of the seed
// documents. Each is strict about request shapes as its vendor documents
// them, issues short-lived tokens and answers 401 once they expire. The
// tests and `authsidecar demo` use the same emulators.
package emulators

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/issuer"
)

// Options are what every emulator shares.
type Options struct {
	ClientID     string
	ClientSecret string
	Username     string
	Password     string
	// RedirectLoopback registers every http://127.0.0.1:PORT/... and
	// http://localhost:PORT/... redirect URI besides RedirectURL, as a
	// vendor's "development" client does: the demo's emulators then serve
	// a sidecar the user configures on any local port.
	RedirectLoopback bool
	// RedirectURL, when set, is the only redirect_uri the authorize and
	// token endpoints accept, as the vendor's registered callback.
	RedirectURL string
	// AccessLifetime and RefreshLifetime; zero means the vendor's own.
	AccessLifetime  time.Duration
	RefreshLifetime time.Duration
	// DenyConsent makes the authorize endpoint answer access_denied, as
	// when the user clicks Cancel.
	DenyConsent bool
	// Now is the emulator's clock; nil means the wall clock.
	Now clock.Clock
}

// authorize serves an authorize endpoint that approves at once, as if the
// user had clicked Allow (or Cancel, with DenyConsent).
func authorize(i *issuer.Issuer, o Options, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "authorize is a GET", http.StatusMethodNotAllowed)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("client_id") != o.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case redirect == "" || (o.RedirectURL != "" && redirect != o.RedirectURL && !(o.RedirectLoopback && loopbackURL(redirect))):
		// Never redirect to an unregistered URI (RFC 6749 4.1.2.1).
		http.Error(w, "redirect_uri does not match the client's", http.StatusBadRequest)
		return
	}
	target, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := target.Query()
	if state := q.Get("state"); state != "" {
		back.Set("state", state)
	}
	if o.DenyConsent {
		back.Set("error", "access_denied")
		back.Set("error_description", "The user denied access")
	} else {
		back.Set("code", i.NewCode(redirect))
	}
	target.RawQuery = back.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// oauthError answers an RFC 6749 error and notes why.
func oauthError(i *issuer.Issuer, w http.ResponseWriter, status int, code, why string) {
	i.Refuse(fmt.Sprintf("%s: %s", code, why))
	issuer.WriteJSON(w, status, map[string]string{"error": code, "error_description": why})
}

// loopbackURL reports whether raw is an http URL on this machine.
func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return u.Hostname() == "localhost" || ip != nil && ip.IsLoopback()
}
