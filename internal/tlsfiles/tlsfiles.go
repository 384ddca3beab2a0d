// Package tlsfiles serves TLS certificates from files that change under the
// process — cert-manager renewing them, a Kubernetes Secret volume swapping
// its ..data link, an editor renaming — without a restart. A change that
// does not load keeps the last good certificate.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/filestamp"
)

// Pair is a certificate and its key in two files, re-read when they change.
type Pair struct {
	certFile, keyFile string
	// OnError, when set, hears of a change that did not load.
	OnError func(error)

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// checkEvery is how often a handshake looks at the files: a stat each, so
// at most once a second.
const checkEvery = time.Second

// Load reads the pair; its errors name what failed, never the files' data.
func Load(certFile, keyFile string) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile}
	if err := p.reload(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Pair) reload() error {
	stamp, err := filestamp.Of(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("reading the certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("loading the certificate and key: %w", err)
	}
	p.mu.Lock()
	p.cert, p.stamp = &cert, stamp
	p.mu.Unlock()
	return nil
}

// current is the certificate to present, re-read first when the files
// changed since the last look.
func (p *Pair) current() *tls.Certificate {
	p.mu.Lock()
	due := time.Since(p.checked) >= checkEvery
	if due {
		p.checked = time.Now()
	}
	stamp := p.stamp
	p.mu.Unlock()
	if due {
		if now, err := filestamp.Of(p.certFile, p.keyFile); err == nil && now != stamp {
			if err := p.reload(); err != nil && p.OnError != nil {
				p.OnError(err)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cert
}

// GetCertificate is for a server's tls.Config.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.current(), nil
}

// GetClientCertificate is for a client's tls.Config.
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.current(), nil
}

// ClientConfig is the TLS of a client presenting the pair in certFile and
// keyFile (none when empty) and trusting the system's CAs plus those in
// caFile (when set). Errors name the failing setting by its suffix.
func ClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case certFile != "" && keyFile == "":
		return nil, errors.New("TLS_KEY_FILE: is required with TLS_CERT_FILE")
	case certFile == "" && keyFile != "":
		return nil, errors.New("TLS_CERT_FILE: is required with TLS_KEY_FILE")
	case certFile != "":
		pair, err := Load(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
		}
		cfg.GetClientCertificate = pair.GetClientCertificate
	}
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS_CA_FILE: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("TLS_CA_FILE: holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
