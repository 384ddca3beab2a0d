package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/fakeclock"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testCA issues certificates for servers and clients on this machine.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	n    int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), n: 1}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	ca.n++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.n), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.IPAddresses, tmpl.ExtKeyUsage = []net.IP{net.ParseIP("127.0.0.1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writePair writes a client certificate and key where the sidecar reads
// them, each file replaced whole (written aside, renamed).
func writePair(t *testing.T, dir string, c tls.Certificate) {
	t.Helper()
	keyDER, _ := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	for name, data := range map[string][]byte{
		"client.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		"client.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		tmp := filepath.Join(dir, name+".tmp")
		os.WriteFile(tmp, data, 0o600)
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func thumbprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// mtlsServer is a TLS server that requires a client certificate from ca.
func mtlsServer(t *testing.T, ca *testCA, h http.Handler) *httptest.Server {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1", true)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// RFC 8705 end to end: the client certificate authenticates the route to
// its token endpoint (tls_client_auth), the token is bound to it (cnf
// x5t#S256), and the upstream takes the token only with that certificate.
// Then the certificate files are rotated mid-traffic: no call fails, and the
// new certificate gets a new token.
func TestMutualTLSWithCertificateBoundTokens(t *testing.T) {
	ca := newTestCA(t)
	// Access tokens are JWTs the token server signs, bound to the client
	// certificate by cnf.x5t#S256 (RFC 8705 section 3.1); the API checks the
	// binding against the certificate the call came with.
	serverKey := []byte("the-token-servers-own-hmac-key-32")
	type boundClaims struct {
		jwt.Claims
		Cnf struct {
			X5tS256 string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	var mu sync.Mutex
	var issuedTo []string
	tokens := mtlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		peer := r.TLS.PeerCertificates[0]
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != "svc" ||
			r.PostForm.Get("client_secret") != "" || r.Header.Get("Authorization") != "" || peer.Subject.CommonName != "svc" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
			return
		}
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: serverKey}, nil)
		var c boundClaims
		c.ID, c.Expiry = fmt.Sprint(time.Now().UnixNano()), jwt.NewNumericDate(time.Now().Add(48*time.Hour))
		c.Cnf.X5tS256 = thumbprintOf(peer.Raw)
		at, _ := jwt.Signed(signer).Claims(c).Serialize()
		mu.Lock()
		issuedTo = append(issuedTo, thumbprintOf(peer.Raw))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600})
	}))
	api := mtlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c boundClaims
		parsed, err := jwt.ParseSigned(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), []jose.SignatureAlgorithm{jose.HS256})
		if err != nil || parsed.Claims(serverKey, &c) != nil || c.Cnf.X5tS256 != thumbprintOf(r.TLS.PeerCertificates[0].Raw) {
			w.WriteHeader(http.StatusUnauthorized) // not ours, or not bound to this certificate
			return
		}
		w.Write([]byte("ok"))
	}))

	// Each call a new connection, as connections are renewed over time:
	// a new one presents what the files hold then.
	api.Config.SetKeepAlivesEnabled(false)
	tokens.Config.SetKeepAlivesEnabled(false)

	dir := t.TempDir()
	first := ca.issue(t, "svc", false)
	writePair(t, dir, first)
	os.WriteFile(filepath.Join(dir, "ca.crt"), ca.pem, 0o600)
	clock := fakeclock.New(time.Now())
	_, side := sidecar(t, map[string]string{
		"ROUTES": "api", "API_UPSTREAM_URL": api.URL, "API_TOKEN_URL": tokens.URL + "/token",
		"API_CLIENT_ID": "svc", "API_CLIENT_AUTH": "tls_client_auth",
		"API_TLS_CERT_FILE": filepath.Join(dir, "client.crt"), "API_TLS_KEY_FILE": filepath.Join(dir, "client.key"),
		"API_TLS_CA_FILE": filepath.Join(dir, "ca.crt"),
	}, clock)

	for range 5 {
		if a := call(t, "GET", side+"/api/x", nil, nil); a.status != 200 {
			t.Fatalf("with the first certificate: %d %s", a.status, a.body)
		}
	}
	// Callers keep calling while the certificate rotates: none fails.
	stopLoad := startLoad(side + "/api/x")
	second := ca.issue(t, "svc", false)
	writePair(t, dir, second)
	time.Sleep(1100 * time.Millisecond) // one look at the files
	for range 5 {
		if a := call(t, "GET", side+"/api/x", nil, nil); a.status != 200 {
			t.Fatalf("after the rotation: %d %s", a.status, a.body)
		}
	}
	if n, first := stopLoad(); n != 0 {
		t.Fatalf("%d calls failed while the certificate rotated (first: %s)", n, first)
	}
	// At expiry, the token is refreshed with the current certificate.
	clock.Advance(2 * time.Hour)
	if a := call(t, "GET", side+"/api/x", nil, nil); a.status != 200 {
		t.Fatalf("after expiry: %d %s", a.status, a.body)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{thumbprintOf(first.Certificate[0]), thumbprintOf(second.Certificate[0]), thumbprintOf(second.Certificate[0])}
	if !slices.Equal(issuedTo, want) {
		t.Fatalf("tokens issued to %v; want %v: one per certificate, in order, then one at expiry", issuedTo, want)
	}
}
