package tracing

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// checkEnv refuses OTEL_* values the exporter and the SDK would only log
// and then ignore: a sampler it does not know (it samples everything
// instead), an endpoint it cannot parse (traces go nowhere), a header
// without '=' (sent without it, so the collector refuses every export), an
// unreadable certificate. A sidecar that started with tracing half-on would
// be found out only when someone needs a trace. The errors name the variable
// and never repeat a header's value, which is often an API key — the SDK's
// own message would have logged it.
func checkEnv(getenv func(string) string) error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if err := checkEndpoint(strings.TrimSpace(getenv(name))); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		if err := checkHeaders(strings.TrimSpace(getenv(name))); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if ms, err := strconv.Atoi(v); err != nil || ms < 0 {
				return fmt.Errorf("%s: %q is not a whole number of milliseconds", name, v)
			}
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"} {
		if v := strings.TrimSpace(getenv(name)); v != "" && v != "gzip" && v != "none" {
			return fmt.Errorf("%s: %q is not supported (gzip or none)", name, v)
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE"} {
		if v := strings.TrimSpace(getenv(name)); v != "" && !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
			return fmt.Errorf("%s: %q is not true or false", name, v)
		}
	}
	for _, prefix := range []string{"OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_"} {
		if err := checkCertificates(prefix, getenv); err != nil {
			return err
		}
	}
	return checkSampler(getenv)
}

func checkEndpoint(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The value is not repeated: a URL may carry credentials.
		return fmt.Errorf("must be an http:// or https:// URL with a host, such as http://otel-collector:4318")
	}
	return nil
}

// checkHeaders reads "key1=value1,key2=value2" as the exporter does (values
// URL-encoded).
func checkHeaders(v string) error {
	if v == "" {
		return nil
	}
	for i, pair := range strings.Split(v, ",") {
		key, value, found := strings.Cut(pair, "=")
		key = strings.TrimSpace(key)
		switch {
		case !found:
			return fmt.Errorf("entry %d has no '=' (the form is key1=value1,key2=value2)", i+1)
		case !httpguts.ValidHeaderFieldName(key):
			return fmt.Errorf("entry %d: %q is not a header name", i+1, key)
		}
		if _, err := url.PathUnescape(value); err != nil {
			return fmt.Errorf("entry %d (%s): the value has a bad %%-escape", i+1, key)
		}
	}
	return nil
}

func checkCertificates(prefix string, getenv func(string) string) error {
	if name, file := prefix+"CERTIFICATE", strings.TrimSpace(getenv(prefix+"CERTIFICATE")); file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate in the file", name)
		}
	}
	certName, keyName := prefix+"CLIENT_CERTIFICATE", prefix+"CLIENT_KEY"
	certFile, keyFile := strings.TrimSpace(getenv(certName)), strings.TrimSpace(getenv(keyName))
	switch {
	case certFile == "" && keyFile == "":
		return nil
	case certFile == "" || keyFile == "":
		return fmt.Errorf("%s and %s: set both or neither", certName, keyName)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("%s and %s: %w", certName, keyName, err)
	}
	return nil
}

// The samplers the SDK builds from OTEL_TRACES_SAMPLER; it reads the name
// trimmed and in lower case.
var samplers = map[string]bool{
	"always_on": true, "always_off": true, "traceidratio": true,
	"parentbased_always_on": true, "parentbased_always_off": true, "parentbased_traceidratio": true,
}

func checkSampler(getenv func(string) string) error {
	sampler := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	if sampler == "" {
		return nil
	}
	if !samplers[sampler] {
		return fmt.Errorf("OTEL_TRACES_SAMPLER: %q is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", sampler)
	}
	if !strings.HasSuffix(sampler, "traceidratio") {
		return nil
	}
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	if arg == "" {
		return nil // the SDK's default ratio, 1.0
	}
	if ratio, err := strconv.ParseFloat(arg, 64); err != nil || ratio < 0 || ratio > 1 {
		return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
	}
	return nil
}
