package auth

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/authsidecar/authsidecar/internal/clock"
	jose "github.com/go-jose/go-jose/v4"
)

// The grants that trade a token the route already has for one of the
// vendor's: an assertion (RFC 7523 section 2.1) and a token exchange
// (RFC 8693). Their inputs are files, read at each request: a projected or
// workload-identity token rotates under the sidecar.

const (
	jwtBearerGrantType     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	tokenExchangeGrantType = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeJWT is RFC 8693's token type of a JWT, the default subject
	// token type.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
)

// tokenFile is a token or assertion kept in a file and read at each use: a
// projected or workload-identity token is rewritten under the sidecar. A
// file that stops reading serves the last value it gave (the watcher in
// internal/app reports it); only one never read is an error, naming the
// variable.
type tokenFile struct {
	setting, path string

	mu   sync.Mutex
	last string
}

// newTokenFile reads the file once, so a route whose file does not read
// does not start.
func newTokenFile(setting, path string) (*tokenFile, error) {
	f := &tokenFile{setting: setting, path: path}
	if _, err := f.read(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *tokenFile) read() (string, error) {
	raw, err := os.ReadFile(f.path)
	tok := strings.TrimSpace(string(raw))
	if err == nil && tok == "" {
		err = errors.New("the file is empty")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.last != "" {
			return f.last, nil
		}
		return "", &SettingError{Setting: f.setting, Err: fmt.Errorf("reading the token: %w", err)}
	}
	f.last = tok
	return tok, nil
}

// jwtBearerRequest is the RFC 7523 grant: the assertion in ASSERTION_FILE,
// or one signed with CLIENT_KEY_FILE for ASSERTION_SUBJECT.
func jwtBearerRequest(s Settings, now clock.Clock) (func() (TokenRequest, error), error) {
	var sign *PrivateKeyJWT
	var file *tokenFile
	switch {
	case s.AssertionFile != "":
		var err error
		if file, err = newTokenFile("ASSERTION_FILE", s.AssertionFile); err != nil {
			return nil, err
		}
	case s.ClientKeyFile != "" && s.AssertionSubject != "":
		sign = &PrivateKeyJWT{KeyFile: s.ClientKeyFile, KeyID: s.ClientKeyID, Algorithm: s.ClientKeyAlg, Clock: now}
		if _, err := sign.signer(); err != nil {
			return nil, &SettingError{Setting: "CLIENT_KEY_FILE", Err: err}
		}
	default:
		return nil, settingErr("ASSERTION_FILE", "is required for grant jwt_bearer (or CLIENT_KEY_FILE with ASSERTION_SUBJECT, to sign one)")
	}
	issuer := s.AssertionIssuer
	if issuer == "" {
		issuer = s.ClientID
	}
	return func() (TokenRequest, error) {
		var assertion string
		var err error
		if file != nil {
			assertion, err = file.read()
		} else {
			var signer jose.Signer
			if signer, err = sign.signer(); err == nil {
				assertion, err = signAssertion(signer, issuer, s.AssertionSubject, assertionAudience(s), sign.Clock.Now())
			}
		}
		if err != nil {
			return TokenRequest{}, err
		}
		p := url.Values{"grant_type": {jwtBearerGrantType}, "assertion": {assertion}}
		if s.Scope != "" {
			p.Set("scope", s.Scope)
		}
		return TokenRequest{Params: p}, nil
	}, nil
}

// tokenExchangeRequest is the RFC 8693 grant.
func tokenExchangeRequest(s Settings) (func() (TokenRequest, error), error) {
	if s.SubjectTokenFile == "" {
		return nil, settingErr("SUBJECT_TOKEN_FILE", "is required for grant token_exchange")
	}
	subjectFile, err := newTokenFile("SUBJECT_TOKEN_FILE", s.SubjectTokenFile)
	if err != nil {
		return nil, err
	}
	var actorFile *tokenFile
	if s.ActorTokenFile != "" {
		if actorFile, err = newTokenFile("ACTOR_TOKEN_FILE", s.ActorTokenFile); err != nil {
			return nil, err
		}
	}
	subjectType := s.SubjectTokenType
	if subjectType == "" {
		subjectType = TokenTypeJWT
	}
	return func() (TokenRequest, error) {
		subject, err := subjectFile.read()
		if err != nil {
			return TokenRequest{}, err
		}
		p := url.Values{"grant_type": {tokenExchangeGrantType}, "subject_token": {subject}, "subject_token_type": {subjectType}}
		setGiven(p, map[string]string{"audience": s.Audience, "resource": s.Resource, "requested_token_type": s.RequestedTokenType, "scope": s.Scope})
		if actorFile != nil {
			actor, err := actorFile.read()
			if err != nil {
				return TokenRequest{}, err
			}
			p.Set("actor_token", actor)
			p.Set("actor_token_type", TokenTypeJWT)
		}
		return TokenRequest{Params: p}, nil
	}, nil
}
