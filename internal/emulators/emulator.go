package emulators

import "net/http"

// Emulator is what every vendor emulator offers tests and the demo.
type Emulator interface {
	http.Handler
	// Stats says what the emulator saw.
	Stats() Stats
	// ExpireAccess ends every access token now, as time passing would.
	ExpireAccess()
	// RevokeAll revokes every token issued so far.
	RevokeAll()
	// Secrets lists every token issued, for leak checks.
	Secrets() []string
}

func (i *issuer) Stats() Stats      { return i.stats() }
func (i *issuer) ExpireAccess()     { i.expireAccess() }
func (i *issuer) RevokeAll()        { i.revokeAll() }
func (i *issuer) Secrets() []string { return i.secrets() }

var (
	_ Emulator = (*Viewneo)(nil)
	_ Emulator = (*Movingimage)(nil)
	_ Emulator = (*Veem)(nil)
	_ Emulator = (*Viadeo)(nil)
)
