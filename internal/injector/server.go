package injector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/authsidecar/authsidecar/internal/tlsfiles"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Handler is the injector's HTTP side: /mutate, /healthz and /metrics.
func Handler(cfg *Config, log *zap.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.Handle("/mutate", NewWebhook(cfg, log, reg))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// Run serves the webhook over HTTPS on cfg.ListenAddr until ctx ends.
func Run(ctx context.Context, cfg *Config, log *zap.Logger) error {
	certs, err := tlsfiles.Load(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("INJECTOR_TLS_CERT_FILE/INJECTOR_TLS_KEY_FILE: %w", err)
	}
	certs.OnError = func(err error) {
		log.Warn("the serving certificate changed but does not load; keeping the last good one", zap.Error(err))
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("INJECTOR_LISTEN_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           Handler(cfg, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	log.Info("injector listening", zap.String("addr", ln.Addr().String()),
		zap.String("image", cfg.SidecarImage), zap.Bool("native_sidecar", cfg.NativeSidecar))
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("draining: %w", err)
	}
	return nil
}
