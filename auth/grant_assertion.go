package auth

import (
	"fmt"
	"net/url"
	"os"
	"strings"

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

// readToken reads a token from a file, trimmed; setting names the variable.
func readToken(setting, path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", &SettingError{Setting: setting, Err: fmt.Errorf("reading the token: %w", err)}
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", settingErr(setting, "the file is empty")
	}
	return tok, nil
}

// jwtBearerRequest is the RFC 7523 grant: the assertion in ASSERTION_FILE,
// or one signed with CLIENT_KEY_FILE for ASSERTION_SUBJECT.
func jwtBearerRequest(s Settings, now clock.Clock) (func() (TokenRequest, error), error) {
	var sign *PrivateKeyJWT
	switch {
	case s.AssertionFile != "":
		if _, err := readToken("ASSERTION_FILE", s.AssertionFile); err != nil {
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
		if sign == nil {
			assertion, err = readToken("ASSERTION_FILE", s.AssertionFile)
		} else {
			var signer jose.Signer
			if signer, err = sign.signer(); err == nil {
				assertion, err = signAssertion(signer, issuer, s.AssertionSubject, audience(s.ClientAssertionAudience, s.TokenURL), sign.Clock.Now())
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
	if _, err := readToken("SUBJECT_TOKEN_FILE", s.SubjectTokenFile); err != nil {
		return nil, err
	}
	subjectType := s.SubjectTokenType
	if subjectType == "" {
		subjectType = TokenTypeJWT
	}
	return func() (TokenRequest, error) {
		subject, err := readToken("SUBJECT_TOKEN_FILE", s.SubjectTokenFile)
		if err != nil {
			return TokenRequest{}, err
		}
		p := url.Values{"grant_type": {tokenExchangeGrantType}, "subject_token": {subject}, "subject_token_type": {subjectType}}
		for k, v := range map[string]string{"audience": s.Audience, "resource": s.Resource, "requested_token_type": s.RequestedTokenType, "scope": s.Scope} {
			if v != "" {
				p.Set(k, v)
			}
		}
		if s.ActorTokenFile != "" {
			actor, err := readToken("ACTOR_TOKEN_FILE", s.ActorTokenFile)
			if err != nil {
				return TokenRequest{}, err
			}
			p.Set("actor_token", actor)
			p.Set("actor_token_type", TokenTypeJWT)
		}
		return TokenRequest{Params: p}, nil
	}, nil
}
