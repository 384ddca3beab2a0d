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
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Each key type signs with its algorithm (or the one CLIENT_KEY_ALG picks
// among those the key allows), under the kid CLIENT_KEY_ID gives, with
// claims a verifier takes: the assertion verifies with the public key.
func TestPrivateKeyJWTKeyTypes(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	const tokenURL = "https://auth.example/token"
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
		want jose.SignatureAlgorithm
	}{
		{"RSA", rsaKey, "", jose.RS256},
		{"RSA PS256", rsaKey, "PS256", jose.PS256},
		{"EC P-256", p256, "", jose.ES256},
		{"EC P-384", p384, "", jose.ES384},
		{"Ed25519", edKey, "", jose.EdDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "key.pem")
			os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
			ca, err := newClientAuth(Settings{ClientID: "svc", ClientKeyFile: file, ClientKeyID: "key-2026", ClientKeyAlg: tc.alg}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := url.Values{}
			if err := ca.Authenticate(context.Background(), tokenURL, http.Header{}, p); err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.ParseSigned(p.Get("client_assertion"), []jose.SignatureAlgorithm{tc.want})
			if err != nil {
				t.Fatalf("want a %s assertion: %v", tc.want, err)
			}
			if kid := parsed.Headers[0].KeyID; kid != "key-2026" {
				t.Fatalf("kid %q", kid)
			}
			var claims jwt.Claims
			if err := parsed.Claims(tc.key.Public(), &claims); err != nil {
				t.Fatalf("the signature does not verify: %v", err)
			}
			if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: "svc", Subject: "svc", AnyAudience: jwt.Audience{tokenURL}, Time: time.Now()}, 0); err != nil || claims.ID == "" {
				t.Fatalf("claims %+v: %v", claims, err)
			}
			if life := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); life <= 0 || life > 5*time.Minute {
				t.Fatalf("the assertion lives %s; want a short life", life)
			}
		})
	}

	// An algorithm the key cannot make stops the route, naming the setting.
	der, _ := x509.MarshalPKCS8PrivateKey(p256)
	file := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	_, err := newClientAuth(Settings{ClientID: "svc", ClientKeyFile: file, ClientKeyAlg: "RS256"}, nil)
	if err == nil || !strings.Contains(err.Error(), "CLIENT_KEY") {
		t.Fatalf("ES key with RS256: %v", err)
	}
}
