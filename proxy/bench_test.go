package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/auth"
)

// The sidecar's cost per call, against baselines in the same run: the same
// upstream called directly, and through a bare httputil.ReverseProxy (the
// extra hop any proxy costs). Run:
//
//	go test -run XXX -bench . -benchmem ./proxy
func benchmarkUpstream(b *testing.B) *httptest.Server {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	return up
}

func runCalls(b *testing.B, target string, payload string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var body io.Reader
			method := "GET"
			if payload != "" {
				method, body = "POST", strings.NewReader(payload)
			}
			req, _ := http.NewRequest(method, target, body)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func BenchmarkCall(b *testing.B) {
	for _, payload := range []string{"", strings.Repeat("p", 16<<10)} {
		name := "GET"
		if payload != "" {
			name = "POST16KiB"
		}
		b.Run(name+"/direct", func(b *testing.B) {
			runCalls(b, benchmarkUpstream(b).URL+"/v1/items", payload)
		})
		b.Run(name+"/bare-reverseproxy", func(b *testing.B) {
			up, _ := url.Parse(benchmarkUpstream(b).URL)
			rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(up)
				pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/api")
			}}
			side := httptest.NewServer(rp)
			b.Cleanup(side.Close)
			runCalls(b, side.URL+"/api/v1/items", payload)
		})
		b.Run(name+"/sidecar", func(b *testing.B) {
			up, _ := url.Parse(benchmarkUpstream(b).URL)
			keeper := newKeeper("api", auth.StaticGrant{AccessToken: "t"}, 0, nil, 0)
			h := newHandler(b, []Route{{Name: "api", Upstream: up, Tokens: keeperTokens{keeper}}}, EngineOptions{MaxReplayBytes: 1 << 20}, Options{})
			side := httptest.NewServer(h)
			b.Cleanup(side.Close)
			runCalls(b, side.URL+"/api/v1/items", payload)
		})
	}
}
