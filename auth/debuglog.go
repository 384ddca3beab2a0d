package auth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/internal/redact"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// At LOG_LEVEL=debug, a token call that failed logs what the endpoint
// answered — status, content type and the first bytes — with every secret
// removed: the values this request sent, and the values of answer members
// named like secrets. An operator can then see an HTML login page or a
// vendor's error shape without a packet capture.

// debugHeadBytes bounds how much of an answer a debug line shows.
const debugHeadBytes = 512

func (e *Endpoint) debugFailure(rawURL string, ans answer, sent []string, err error) {
	if e.Log == nil || !e.Log.Core().Enabled(zapcore.DebugLevel) {
		return
	}
	e.Log.Debug("token endpoint answer not usable",
		zap.String("endpoint", safeURL(rawURL)),
		zap.Int("status", ans.status),
		zap.String("content_type", ans.contentType),
		zap.String("answer_head", redactedHead(ans.body, sent)),
		zap.Error(err))
}

// sentSecrets lists the values a token request carried that may be secret:
// every member's value and the Basic credentials.
func sentSecrets(params url.Values, header http.Header) []string {
	var out []string
	for k, vs := range params {
		if k == "grant_type" {
			continue
		}
		out = append(out, vs...)
	}
	r := http.Request{Header: header}
	if user, pass, ok := r.BasicAuth(); ok {
		for _, v := range []string{user, pass} {
			if u, err := url.QueryUnescape(v); err == nil {
				v = u
			}
			out = append(out, v)
		}
	}
	return out
}

func redactedHead(body []byte, sent []string) string {
	var members map[string]any
	if json.Unmarshal(body, &members) == nil {
		for k := range members {
			if redact.SecretName(k) {
				members[k] = "REDACTED"
			}
		}
		body, _ = json.Marshal(members)
	}
	head := string(body)
	if len(head) > debugHeadBytes {
		head = head[:debugHeadBytes]
	}
	for _, s := range sent {
		if len(s) >= 4 {
			head = strings.ReplaceAll(head, s, "REDACTED")
		}
	}
	return head
}
