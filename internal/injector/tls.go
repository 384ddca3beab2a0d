package injector

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// certReloader serves the certificate in its files, re-read when they
// change (cert-manager renews it, a Secret mount swaps its ..data link), so
// the injector needs no restart. A change that does not load keeps the last
// good certificate and is logged.
type certReloader struct {
	certFile, keyFile string
	log               *zap.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and times when last loaded
	checked time.Time
}

// certCheckEvery is how often a handshake looks at the files: a stat each,
// so at most once a second.
const certCheckEvery = time.Second

func newCertReloader(certFile, keyFile string, log *zap.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) filesStamp() (string, error) {
	var stamp string
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return stamp, nil
}

func (r *certReloader) reload() error {
	stamp, err := r.filesStamp()
	if err != nil {
		return fmt.Errorf("INJECTOR_TLS_CERT_FILE/INJECTOR_TLS_KEY_FILE: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("INJECTOR_TLS_CERT_FILE/INJECTOR_TLS_KEY_FILE: %w", err)
	}
	r.mu.Lock()
	r.cert, r.stamp = &cert, stamp
	r.mu.Unlock()
	return nil
}

// GetCertificate is for tls.Config.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	due := time.Since(r.checked) >= certCheckEvery
	if due {
		r.checked = time.Now()
	}
	stamp := r.stamp
	r.mu.Unlock()
	if due {
		if now, err := r.filesStamp(); err == nil && now != stamp {
			if err := r.reload(); err != nil {
				r.log.Warn("the serving certificate changed but does not load; keeping the last good one", zap.Error(err))
			} else {
				r.log.Info("serving certificate reloaded")
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}
