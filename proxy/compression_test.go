package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/authsidecar/authsidecar/auth"
)

// The caller's Accept-Encoding reaches the vendor as it was sent: none
// stays none (the transport does not add gzip and inflate the answer), and
// gzip passes with the answer left compressed for the caller.
func TestAcceptEncodingPassesAsSent(t *testing.T) {
	seen := make(chan string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Accept-Encoding")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	keeper := newKeeper("api", auth.StaticGrant{AccessToken: "t"}, 0, nil, 0)
	h := newHandler(t, []Route{{Name: "api", Upstream: u, Tokens: keeperTokens{keeper},
		Transport: NewUpstreamTransport(0)}}, EngineOptions{}, Options{})
	side := httptest.NewServer(h)
	defer side.Close()
	for _, sent := range []string{"", "gzip"} {
		req, _ := http.NewRequest("GET", side.URL+"/api/x", nil)
		if sent != "" {
			req.Header.Set("Accept-Encoding", sent)
		}
		// A client that adds nothing of its own.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := <-seen; got != sent {
			t.Errorf("caller sent Accept-Encoding %q; the vendor saw %q", sent, got)
		}
	}
}
