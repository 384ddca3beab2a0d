package tracing_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/tracing"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const headerSecret = "hc-4f9a1c2e8b7d"

// A value the exporter or the SDK would log and then ignore stops start-up,
// naming the variable; a header's value never appears in the error.
func TestFromEnvRefusesWhatTheSDKWouldIgnore(t *testing.T) {
	certFile, keyFile := writeCertificate(t)
	for _, tc := range []struct {
		env  map[string]string
		want string // the variable the error must name
	}{
		{map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "::bad"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "otel-collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team: " + headerSecret}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=" + headerSecret + "%zz"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "bad key=" + headerSecret}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"},
		{map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "yes"}, "OTEL_EXPORTER_OTLP_INSECURE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": filepath.Join(t.TempDir(), "absent.pem")}, "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": keyFile}, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certFile}, "OTEL_EXPORTER_OTLP_CLIENT_KEY"},
		{map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certFile, "OTEL_EXPORTER_OTLP_CLIENT_KEY": certFile}, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"},
	} {
		setTracingEnv(t, tc.env)
		tr, err := tracing.FromEnv(context.Background(), zap.NewNop())
		if err == nil {
			tr.Shutdown(context.Background())
			t.Errorf("%v: started", tc.env)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want it to name %s", tc.env, err, tc.want)
		}
		if strings.Contains(err.Error(), headerSecret) {
			t.Errorf("%v: the error repeats a header's value: %v", tc.env, err)
		}
	}
}

// What the README and the chart show, and what the SDK takes, still starts.
func TestFromEnvTakesValidSettings(t *testing.T) {
	certFile, keyFile := writeCertificate(t)
	for _, env := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
		{"OTEL_TRACES_SAMPLER": " Always_On ", "OTEL_TRACES_SAMPLER_ARG": "ignored by this sampler"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example:4318/v1/traces"},
		{"OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=" + headerSecret + ",x-dataset=auth%20sidecar"},
		{"OTEL_EXPORTER_OTLP_TIMEOUT": "5000", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_INSECURE": "TRUE"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1", "OTEL_EXPORTER_OTLP_CERTIFICATE": certFile,
			"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certFile, "OTEL_EXPORTER_OTLP_CLIENT_KEY": keyFile},
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "always_off"},
	} {
		setTracingEnv(t, env)
		tr, err := tracing.FromEnv(context.Background(), zap.NewNop())
		if err != nil {
			t.Errorf("%v: %v", env, err)
			continue
		}
		if !tr.Enabled {
			t.Errorf("%v: tracing is off", env)
		}
		tr.Shutdown(context.Background())
	}
}

// setTracingEnv turns tracing on towards a collector nobody listens on, with
// env over it; the variables of earlier cases are cleared.
func setTracingEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OTEL_") {
			t.Setenv(name, "")
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func writeCertificate(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "collector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// What the SDK reports while running (here, an export the collector never
// took) is a warning in the sidecar's JSON log, not a line from the
// standard library's logger that a log pipeline cannot parse.
func TestSDKErrorsGoToTheLog(t *testing.T) {
	setTracingEnv(t, map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "20"})
	core, logs := observer.New(zap.WarnLevel)
	tr, err := tracing.FromEnv(context.Background(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	_, span := tr.Tracer().Start(context.Background(), "call")
	span.End()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("OpenTelemetry").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a failed export was not logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	entry := logs.FilterMessageSnippet("OpenTelemetry").All()[0]
	if !strings.Contains(entry.ContextMap()["error"].(string), "127.0.0.1:1") {
		t.Fatalf("logged %v, want the export's error", entry.ContextMap())
	}
}
