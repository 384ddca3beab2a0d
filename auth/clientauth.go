package auth

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// ClientAuth proves who the client is in a token request (RFC 6749 section
// 2.3): it adds its credentials to the request's header or members. Each
// CLIENT_AUTH method is one implementation, registered from its own file, so
// a new method is a new file and nothing else.
type ClientAuth interface {
	// Authenticate adds the client's credentials to a request to tokenURL.
	// It may be called concurrently, once per request: a method that signs
	// something signs afresh each time.
	Authenticate(ctx context.Context, tokenURL string, header http.Header, params url.Values) error
}

// clientAuthMethod builds a CLIENT_AUTH method from a route's settings; its
// errors are SettingErrors naming what is missing.
// now is the clock assertions are dated by.
type clientAuthMethod func(s Settings, now clock.Clock) (ClientAuth, error)

var clientAuthMethods = map[string]clientAuthMethod{}

// registerClientAuth is called from each method's file.
func registerClientAuth(name string, build clientAuthMethod) {
	if _, dup := clientAuthMethods[name]; dup {
		panic("auth: client authentication " + name + " registered twice")
	}
	clientAuthMethods[name] = build
}

// defaultClientAuth is RFC 6749's preferred method.
const defaultClientAuth = "basic"

// newClientAuth builds the method CLIENT_AUTH names (basic when empty).
func newClientAuth(s Settings, now clock.Clock) (ClientAuth, error) {
	name := s.ClientAuth
	switch {
	case name != "":
	case s.ClientKeyFile != "" || s.ClientAssertionFile != "":
		// A key or an assertion given says how the client authenticates.
		name = "private_key_jwt"
	default:
		name = defaultClientAuth
	}
	build, ok := clientAuthMethods[name]
	if !ok {
		names := make([]string, 0, len(clientAuthMethods))
		for n := range clientAuthMethods {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, settingErr("CLIENT_AUTH", "unknown client authentication %q (want %s)", name, joinOr(names))
	}
	return build(s, now)
}

func joinOr(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func init() {
	registerClientAuth("basic", func(s Settings, _ clock.Clock) (ClientAuth, error) {
		if s.ClientID == "" || s.ClientSecret == "" {
			// A public client: there is nothing to put in a Basic header.
			return PublicClient{ID: s.ClientID}, nil
		}
		return ClientSecretBasic{ID: s.ClientID, Secret: s.ClientSecret}, nil
	})
	registerClientAuth("body", func(s Settings, _ clock.Clock) (ClientAuth, error) {
		if s.ClientID == "" {
			return PublicClient{}, nil
		}
		return ClientSecretPost{ID: s.ClientID, Secret: s.ClientSecret}, nil
	})
	registerClientAuth("none", func(s Settings, _ clock.Clock) (ClientAuth, error) {
		return PublicClient{ID: s.ClientID}, nil
	})
	// The client certificate (TLS_CERT_FILE) authenticates, at the TLS
	// layer (RFC 8705 section 2): the body names the client, nothing more.
	registerClientAuth("tls_client_auth", func(s Settings, _ clock.Clock) (ClientAuth, error) {
		if s.ClientID == "" {
			return nil, settingErr("CLIENT_ID", "is required with CLIENT_AUTH=tls_client_auth")
		}
		if s.TLSCertFile == "" {
			return nil, settingErr("TLS_CERT_FILE", "is required with CLIENT_AUTH=tls_client_auth: the certificate is what authenticates")
		}
		return PublicClient{ID: s.ClientID}, nil
	})
}

// ClientSecretBasic sends client_id and client_secret as HTTP Basic
// credentials (CLIENT_AUTH=basic).
type ClientSecretBasic struct{ ID, Secret string }

// Authenticate implements ClientAuth.
func (c ClientSecretBasic) Authenticate(_ context.Context, _ string, h http.Header, _ url.Values) error {
	// RFC 6749 2.3.1: both parts are form-encoded before Basic encoding,
	// so a secret with ':' or '%' survives.
	r := http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	return nil
}

// ClientSecretPost sends client_id and client_secret as members of the
// request body (CLIENT_AUTH=body).
type ClientSecretPost struct{ ID, Secret string }

// Authenticate implements ClientAuth.
func (c ClientSecretPost) Authenticate(_ context.Context, _ string, _ http.Header, p url.Values) error {
	p.Set("client_id", c.ID)
	p.Set("client_secret", c.Secret)
	return nil
}

// PublicClient sends only its client_id, if it has one (CLIENT_AUTH=none).
type PublicClient struct{ ID string }

// Authenticate implements ClientAuth.
func (c PublicClient) Authenticate(_ context.Context, _ string, _ http.Header, p url.Values) error {
	if c.ID != "" {
		p.Set("client_id", c.ID)
	}
	return nil
}
