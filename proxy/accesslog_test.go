package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/internal/logtest"
)

// ACCESS_LOG: every call logged (all), the first ten of a second and then
// one in a hundred (sampled), or none (off) — but an error answer always
// gets its line.
func TestAccessLogModes(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	for mode, want := range map[string]int{"all": 500, "": 500, "sampled": 10 + 5, "off": 0} {
		t.Run(fmt.Sprintf("%q", mode), func(t *testing.T) {
			log, logs := logtest.New()
			keeper := newKeeper("api", auth.StaticGrant{AccessToken: "t"}, 0, nil, 0)
			h := newHandler(t, []Route{{Name: "api", Upstream: u, Tokens: keeperTokens{keeper}}}, EngineOptions{}, Options{Logger: log, AccessLog: mode})
			side := httptest.NewServer(h)
			defer side.Close()
			for range 500 {
				resp, err := http.Get(side.URL + "/api/x")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			resp, err := http.Get(side.URL + "/api/missing")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			logs.WaitFor(t, `"status":404`)
			ok := strings.Count(logs.String(), `"status":200`)
			// Sampled: the 500 calls may straddle a second's turn.
			if ok != want && !(mode == "sampled" && ok >= want && ok <= 2*want) {
				t.Errorf("%d lines for 500 answered calls, want %d", ok, want)
			}
		})
	}
}
