package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate with serial n to dir, swapping
// a ..data link the way a Kubernetes Secret volume does.
func writeCert(t *testing.T, dir string, n int64) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "injector"},
		DNSNames: []string{"injector.authsidecar.svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	version := filepath.Join(dir, "..v"+big.NewInt(n).String())
	os.MkdirAll(version, 0o700)
	os.WriteFile(filepath.Join(version, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(version, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	tmp := filepath.Join(dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f))
	}
}

func servedSerial(t *testing.T, r *Pair) int64 {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

// The serving certificate is re-read when its files change (a renewed
// Secret swaps its ..data link); a broken change keeps the last good one.
func TestServingCertificateIsReloaded(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	r, err := Load(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, r); got != 1 {
		t.Fatalf("serial %d", got)
	}
	writeCert(t, dir, 2)
	deadline := time.Now().Add(5 * time.Second)
	for servedSerial(t, r) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was never served")
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(dir, "..v2", "tls.key"), []byte("broken"), 0o600)
	time.Sleep(1100 * time.Millisecond) // one check interval
	if got := servedSerial(t, r); got != 2 {
		t.Fatalf("after a broken change: serial %d, want the last good one", got)
	}
}
