package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// upstream is a vendor stand-in in the harness's process: plain HTTP
// answering "ok" at once (workload a), or HTTPS under a private CA
// answering after a delay (workload b), HTTP/1.1 only or offering h2.
type upstream struct {
	URL string
	// conns counts connections accepted: each TLS one is a handshake.
	conns, resumed atomic.Int64
	srv            *http.Server
}

func (u *upstream) handler(delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer bench-token" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
}

func startPlain() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{URL: "http://" + ln.Addr().String()}
	u.srv = &http.Server{Handler: u.handler(0), ConnState: u.count}
	go u.srv.Serve(ln)
	return u, nil
}

func startTLS(cert tls.Certificate, delay time.Duration, h2 bool) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{URL: "https://localhost:" + portOf(ln.Addr())}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	// Proxies that close idle connections mid-handshake are not the
	// benchmark's business: no line per connection.
	u.srv = &http.Server{Handler: u.handler(delay), ConnState: u.count, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	if h2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	} else {
		u.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no h2
	}
	go u.srv.ServeTLS(ln, "", "")
	return u, nil
}

func (u *upstream) count(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		u.conns.Add(1)
	case http.StateActive:
		if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().DidResume {
			u.resumed.Add(1)
		}
	}
}

func portOf(a net.Addr) string { _, p, _ := net.SplitHostPort(a.String()); return p }

// privateCA makes a CA and a certificate for localhost under it, and writes
// the CA's certificate to dir/ca.pem for the proxies to trust.
func privateCA(dir string) (tls.Certificate, string, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return tls.Certificate{}, "", err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path, nil
}
