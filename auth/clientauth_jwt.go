package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/filestamp"
)

// Client authentication by a signed assertion instead of a shared secret
// (RFC 7523 section 2.2, OIDC private_key_jwt and client_secret_jwt): every
// token request carries a fresh, short-lived JWT. Signing is go-jose's.

// assertionType is RFC 7523's client_assertion_type.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a signed assertion is good for: long enough
// for one token request, short enough that a captured one is soon useless.
const assertionLifetime = 2 * time.Minute

func init() {
	registerClientAuth("private_key_jwt", func(s Settings, now clock.Clock) (ClientAuth, error) {
		if s.ClientID == "" {
			return nil, settingErr("CLIENT_ID", "is required with CLIENT_AUTH=private_key_jwt")
		}
		switch {
		case s.ClientAssertionFile != "" && s.ClientKeyFile != "":
			return nil, settingErr("CLIENT_ASSERTION_FILE", "and CLIENT_KEY_FILE are both set: an assertion is either read ready-made or signed, not both")
		case s.ClientAssertionFile != "":
			return NewAssertionFile(s.ClientID, s.ClientAssertionFile)
		case s.ClientKeyFile == "":
			return nil, settingErr("CLIENT_KEY_FILE", "is required with CLIENT_AUTH=private_key_jwt (or CLIENT_ASSERTION_FILE, a ready-made assertion)")
		}
		k := &PrivateKeyJWT{ClientID: s.ClientID, KeyFile: s.ClientKeyFile, KeyID: s.ClientKeyID,
			Algorithm: s.ClientKeyAlg, Audience: assertionAudience(s), Clock: now}
		if _, err := k.signer(); err != nil {
			return nil, &SettingError{Setting: "CLIENT_KEY_FILE", Err: err}
		}
		return k, nil
	})
	registerClientAuth("client_secret_jwt", func(s Settings, now clock.Clock) (ClientAuth, error) {
		if s.ClientID == "" || s.ClientSecret == "" {
			return nil, settingErr("CLIENT_SECRET", "and CLIENT_ID are required with CLIENT_AUTH=client_secret_jwt")
		}
		return &ClientSecretJWT{ClientID: s.ClientID, Secret: s.ClientSecret, Audience: assertionAudience(s), Clock: now}, nil
	})
}

// PrivateKeyJWT signs each assertion with the private key in KeyFile (PEM:
// RSA, EC P-256/P-384 or Ed25519), read again when it changes, so a rotated
// key is used from the next token request on.
type PrivateKeyJWT struct {
	ClientID string
	KeyFile  string
	// KeyID is the header's kid; empty: the key's RFC 7638 thumbprint.
	KeyID string
	// Algorithm overrides the one the key implies (PS256 for an RSA key).
	Algorithm string
	// Audience is the aud claim; empty: the token URL.
	Audience string
	Clock    clock.Clock

	mu      sync.Mutex
	stamp   string // the key file's size and time when it was read
	current jose.Signer
}

// Authenticate implements ClientAuth.
func (k *PrivateKeyJWT) Authenticate(_ context.Context, requestURL string, _ http.Header, p url.Values) error {
	signer, err := k.signer()
	if err != nil {
		return err
	}
	assertion, err := signAssertion(signer, k.ClientID, k.ClientID, audience(k.Audience, requestURL), k.Clock.Now())
	if err != nil {
		return err
	}
	setAssertion(p, k.ClientID, assertion)
	return nil
}

// signer is the key's signer, re-made when the key file changed. A file that
// no longer reads keeps the last good key.
func (k *PrivateKeyJWT) signer() (jose.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	stamp, err := filestamp.Of(k.KeyFile)
	if err == nil && k.current != nil && stamp == k.stamp {
		return k.current, nil
	}
	s, stamp, loadErr := loadSigner(k.KeyFile, k.KeyID, k.Algorithm)
	if loadErr != nil {
		if k.current != nil {
			return k.current, nil
		}
		return nil, loadErr
	}
	k.current, k.stamp = s, stamp
	return s, nil
}

// loadSigner reads a PEM private key and makes its signer; errors never
// quote the file.
func loadSigner(path, keyID, alg string) (jose.Signer, string, error) {
	stamp, err := filestamp.Of(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the private key: %w", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the private key: %w", err)
	}
	key, err := parsePrivateKey(raw)
	if err != nil {
		return nil, "", err
	}
	algorithm, err := algorithmFor(key, alg)
	if err != nil {
		return nil, "", err
	}
	if keyID == "" {
		// The key's RFC 7638 thumbprint: a server that registers keys by
		// thumbprint follows a rotation with no configuration change.
		tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, "", fmt.Errorf("taking the key's thumbprint: %w", err)
		}
		keyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", keyID)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: algorithm, Key: key}, opts)
	if err != nil {
		return nil, "", fmt.Errorf("making a signer of the private key: %w", err)
	}
	return s, stamp, nil
}

func parsePrivateKey(raw []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("the private key file is not PEM")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the private key is not PKCS #8")
		}
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("the private key is a %q block, not an RSA, EC or Ed25519 private key", block.Type)
}

// algorithmFor is the key's algorithm: RS256 for RSA (or what alg asks),
// ES256/ES384 for EC P-256/P-384, EdDSA for Ed25519.
func algorithmFor(key crypto.Signer, alg string) (jose.SignatureAlgorithm, error) {
	var allowed []jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		allowed = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			allowed = []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			allowed = []jose.SignatureAlgorithm{jose.ES384}
		default:
			return "", errors.New("the EC key is not on P-256 or P-384")
		}
	case ed25519.PrivateKey:
		allowed = []jose.SignatureAlgorithm{jose.EdDSA}
	default:
		return "", errors.New("the key is not RSA, EC or Ed25519")
	}
	if alg == "" {
		return allowed[0], nil
	}
	for _, a := range allowed {
		if string(a) == alg {
			return a, nil
		}
	}
	return "", fmt.Errorf("CLIENT_KEY_ALG %s does not fit the key (it takes %v)", alg, allowed)
}

// signAssertion makes an assertion: iss and sub (the client, for client
// authentication), aud the token endpoint, a unique jti, and a short life.
func signAssertion(s jose.Signer, iss, sub, aud string, now time.Time) (string, error) {
	jti := make([]byte, 16)
	rand.Read(jti)
	claims := jwt.Claims{
		Issuer: iss, Subject: sub, Audience: jwt.Audience{aud}, ID: hex.EncodeToString(jti),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	a, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return a, nil
}

// assertionAudience is the aud of the route's client assertions:
// CLIENT_ASSERTION_AUDIENCE, else the token URL — for every request,
// revocation included: the authorization server is named by its token
// endpoint (RFC 7523 section 3), and servers such as fosite refuse an
// assertion addressed to the revocation URL.
func assertionAudience(s Settings) string {
	if s.ClientAssertionAudience != "" {
		return s.ClientAssertionAudience
	}
	return s.TokenURL
}

// audience is configured, else the URL the request goes to (for a client
// authentication made without settings).
func audience(configured, requestURL string) string {
	if configured != "" {
		return configured
	}
	return requestURL
}

func setAssertion(p url.Values, clientID, assertion string) {
	p.Set("client_id", clientID)
	p.Set("client_assertion_type", assertionType)
	p.Set("client_assertion", assertion)
}

// ClientSecretJWT signs each assertion with HS256 over the client secret.
type ClientSecretJWT struct {
	ClientID, Secret, Audience string
	Clock                      clock.Clock
}

// Authenticate implements ClientAuth.
func (c *ClientSecretJWT) Authenticate(_ context.Context, requestURL string, _ http.Header, p url.Values) error {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(c.Secret)}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return fmt.Errorf("making the client_secret_jwt signer: %w", err)
	}
	assertion, err := signAssertion(s, c.ClientID, c.ClientID, audience(c.Audience, requestURL), c.Clock.Now())
	if err != nil {
		return err
	}
	setAssertion(p, c.ClientID, assertion)
	return nil
}

// AssertionFile sends a ready-made assertion read from its file at each
// request: a Kubernetes projected service-account token or a cloud
// workload-identity token, which rotate under the sidecar's feet.
type AssertionFile struct {
	ClientID string
	file     *tokenFile
}

// NewAssertionFile reads the assertion in path once, to check it reads.
func NewAssertionFile(clientID, path string) (*AssertionFile, error) {
	f, err := newTokenFile("CLIENT_ASSERTION_FILE", path)
	if err != nil {
		return nil, err
	}
	return &AssertionFile{ClientID: clientID, file: f}, nil
}

// Authenticate implements ClientAuth.
func (a *AssertionFile) Authenticate(_ context.Context, _ string, _ http.Header, p url.Values) error {
	assertion, err := a.file.read()
	if err != nil {
		return err
	}
	setAssertion(p, a.ClientID, assertion)
	return nil
}
