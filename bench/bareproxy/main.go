// Command bareproxy is the baseline of bench/run: the engine the sidecar is
// built on, httputil.ReverseProxy, with nothing of ours — it adds the same
// header and strips the same /api prefix, and trusts the benchmark's CA.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
)

func main() {
	up, err := url.Parse(os.Getenv("UPSTREAM"))
	if err != nil {
		log.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Sized to the callers, as nginx's keepalive and the sidecar's pool are: the
	// engine is measured, not its default of two idle connections.
	transport.MaxIdleConnsPerHost, transport.MaxIdleConns = 1024, 1024
	if ca := os.Getenv("CA_FILE"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		transport.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	rp := &httputil.ReverseProxy{Transport: transport, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(up)
		pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/api")
		pr.Out.Header.Set("Authorization", "Bearer bench-token")
	}}
	log.Fatal(http.ListenAndServe(os.Getenv("LISTEN_ADDR"), rp))
}
