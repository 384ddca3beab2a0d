package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/ratelimit"
)

// Route is one route's settings, read from NAME_* variables.
type Route struct {
	Name string `env:"-"`
	// Prefix is the variables' prefix, such as "MY_API_".
	Prefix string `env:"-"`
	Preset string `env:"PRESET"`

	UpstreamURL  string `env:"UPSTREAM_URL"`
	Grant        string `env:"GRANT"`
	AccessToken  string `env:"ACCESS_TOKEN"`
	ClientID     string `env:"CLIENT_ID"`
	ClientSecret string `env:"CLIENT_SECRET"`
	Scope        string `env:"SCOPE"`
	Username     string `env:"USERNAME"`
	Password     string `env:"PASSWORD"`
	RefreshToken string `env:"REFRESH_TOKEN"`
	TokenURL     string `env:"TOKEN_URL"`
	RefreshURL   string `env:"REFRESH_URL"`
	AuthorizeURL string `env:"AUTHORIZE_URL"`
	RedirectURL  string `env:"REDIRECT_URL"`
	RevokeURL    string `env:"REVOKE_URL"`
	ClientAuth   string `env:"CLIENT_AUTH"`
	TokenBody    string `env:"TOKEN_BODY"`
	Inject       string `env:"INJECT"`
	QueryParam   string `env:"QUERY_PARAM"`
	// Client authentication without a stored secret.
	ClientKeyFile           string `env:"CLIENT_KEY_FILE"`
	ClientKeyID             string `env:"CLIENT_KEY_ID"`
	ClientKeyAlg            string `env:"CLIENT_KEY_ALG"`
	ClientAssertionAudience string `env:"CLIENT_ASSERTION_AUDIENCE"`
	ClientAssertionFile     string `env:"CLIENT_ASSERTION_FILE"`
	// The jwt_bearer and token_exchange grants.
	AssertionFile      string `env:"ASSERTION_FILE"`
	AssertionSubject   string `env:"ASSERTION_SUBJECT"`
	AssertionIssuer    string `env:"ASSERTION_ISSUER"`
	SubjectTokenFile   string `env:"SUBJECT_TOKEN_FILE"`
	SubjectTokenType   string `env:"SUBJECT_TOKEN_TYPE"`
	ActorTokenFile     string `env:"ACTOR_TOKEN_FILE"`
	Audience           string `env:"AUDIENCE"`
	Resource           string `env:"RESOURCE"`
	RequestedTokenType string `env:"REQUESTED_TOKEN_TYPE"`
	// A client certificate for the token endpoint and the upstream, and
	// extra CAs trusted for both.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	TLSCAFile   string `env:"TLS_CA_FILE"`
	// AllowInsecureTokenURL lets TOKEN_URL (and REFRESH_URL, REVOKE_URL)
	// be plain http:// to another host.
	AllowInsecureTokenURL bool `env:"ALLOW_INSECURE_TOKEN_URL"`

	// RateLimit is the route's own rate (10/s, 600/m), counted across
	// the fleet; empty: none. A call held back by it, or by a cool-down
	// the vendor asked for, waits up to RateLimitMaxWait, else is
	// answered 429. A vendor's pause is capped at RateLimitMaxCooldown.
	// UpstreamMaxIdleConns is the route's pool of idle connections to its
	// upstream; size it to the calls the route serves at once.
	UpstreamMaxIdleConns int `env:"UPSTREAM_MAX_IDLE_CONNS" envDefault:"256"`

	RateLimit            string        `env:"RATE_LIMIT"`
	RateLimitMaxWait     time.Duration `env:"RATE_LIMIT_MAX_WAIT" envDefault:"0s"`
	RateLimitMaxCooldown time.Duration `env:"RATE_LIMIT_MAX_COOLDOWN" envDefault:"5m"`

	// Options are the preset's own variables, by suffix.
	Options map[string]string `env:"-"`
}

// Rate is RateLimit read (checked at load).
func (r Route) Rate() ratelimit.Rate {
	if r.RateLimit == "" {
		return ratelimit.Rate{}
	}
	rate, _ := ratelimit.ParseRate(r.RateLimit)
	return rate
}

// checkLimits checks the route's pool and rate-limit settings.
func (r Route) checkLimits() error {
	if r.RateLimit != "" {
		if _, err := ratelimit.ParseRate(r.RateLimit); err != nil {
			return fmt.Errorf("%sRATE_LIMIT: %w", r.Prefix, err)
		}
	}
	if r.UpstreamMaxIdleConns <= 0 {
		return fmt.Errorf("%sUPSTREAM_MAX_IDLE_CONNS: must be a positive number of connections, got %d", r.Prefix, r.UpstreamMaxIdleConns)
	}
	if r.RateLimitMaxWait < 0 {
		return fmt.Errorf("%sRATE_LIMIT_MAX_WAIT: must not be negative, got %s", r.Prefix, r.RateLimitMaxWait)
	}
	if r.RateLimitMaxCooldown <= 0 {
		return fmt.Errorf("%sRATE_LIMIT_MAX_COOLDOWN: must be a positive duration such as 5m, got %s", r.Prefix, r.RateLimitMaxCooldown)
	}
	return nil
}

// Settings is the route's settings in auth's terms, before the preset's
// defaults are applied.
func (r Route) Settings() auth.Settings {
	return auth.Settings{
		UpstreamURL: r.UpstreamURL, Grant: r.Grant, AccessToken: r.AccessToken,
		ClientID: r.ClientID, ClientSecret: r.ClientSecret, Scope: r.Scope,
		Username: r.Username, Password: r.Password, RefreshToken: r.RefreshToken,
		TokenURL: r.TokenURL, RefreshURL: r.RefreshURL, AuthorizeURL: r.AuthorizeURL,
		RedirectURL: r.RedirectURL, RevokeURL: r.RevokeURL, ClientAuth: r.ClientAuth,
		TokenBody: r.TokenBody, Inject: r.Inject, QueryParam: r.QueryParam,
		AllowInsecureTokenURL: r.AllowInsecureTokenURL,
		ClientKeyFile:         r.ClientKeyFile, ClientKeyID: r.ClientKeyID, ClientKeyAlg: r.ClientKeyAlg,
		ClientAssertionAudience: r.ClientAssertionAudience, ClientAssertionFile: r.ClientAssertionFile,
		TLSCertFile: r.TLSCertFile, TLSKeyFile: r.TLSKeyFile, TLSCAFile: r.TLSCAFile,
		AssertionFile: r.AssertionFile, AssertionSubject: r.AssertionSubject, AssertionIssuer: r.AssertionIssuer,
		SubjectTokenFile: r.SubjectTokenFile, SubjectTokenType: r.SubjectTokenType, ActorTokenFile: r.ActorTokenFile,
		Audience: r.Audience, Resource: r.Resource, RequestedTokenType: r.RequestedTokenType,
		Options: r.Options,
	}
}

// RoutePrefix is the prefix of a route's variables: the name upper-cased,
// dashes turned into underscores, and an underscore.
func RoutePrefix(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
}

// parseRouteNames splits ROUTES. Which names are allowed is the route
// table's rule (internal/route), checked when the routes are built.
func parseRouteNames(list string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("ROUTES: no routes configured; set ROUTES to a comma-separated list of route names, such as ROUTES=viewneo")
	}
	return names, nil
}
