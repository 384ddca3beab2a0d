package emulators

import (
	"net/http"

	"github.com/authsidecar/authsidecar/internal/issuer"
)

// Emulator is what every vendor emulator offers tests and the demo.
type Emulator interface {
	http.Handler
	// Stats says what the emulator saw.
	Stats() issuer.Stats
	// ExpireAccess ends every access token now, as time passing would.
	ExpireAccess()
	// RevokeAll revokes every token issued so far.
	RevokeAll()
	// Secrets lists every token issued, for leak checks.
	Secrets() []string
}

// ExpirePath is served by every emulator wrapped in WithControls: a POST
// there ends every access token, so a demo can show the sidecar's
// 401 -> refresh -> replay.
const ExpirePath = "/_emulator/expire-tokens"

// WithControls adds the emulator's control endpoint to emu's handler.
func WithControls(emu Emulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ExpirePath && r.Method == http.MethodPost {
			emu.ExpireAccess()
			issuer.WriteJSON(w, http.StatusOK, map[string]string{"status": "every access token expired"})
			return
		}
		emu.ServeHTTP(w, r)
	})
}

var (
	_ Emulator = (*Viewneo)(nil)
	_ Emulator = (*Movingimage)(nil)
	_ Emulator = (*Veem)(nil)
	_ Emulator = (*Viadeo)(nil)
)
