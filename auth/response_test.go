package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/issuer"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestParseTokenResponse(t *testing.T) {
	jwt := issuer.JWT(t0.Add(5*time.Minute), nil)
	refreshJWT := issuer.JWT(t0.Add(time.Hour), nil)
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		fields      Fields
		want        Token
		wantErr     string
		wantKind    ErrorKind
	}{
		{
			name: "json with numeric expires_in", status: 200, contentType: "application/json",
			body: `{"access_token":"a1","token_type":"Bearer","expires_in":3600,"refresh_token":"r1"}`,
			want: Token{AccessToken: "a1", TokenType: "Bearer", RefreshToken: "r1", Expiry: t0.Add(time.Hour), Obtained: t0},
		},
		{
			name: "expires_in as a string", status: 200, contentType: "application/json",
			body: `{"access_token":"a1","expires_in":"120"}`,
			want: Token{AccessToken: "a1", Expiry: t0.Add(2 * time.Minute), Obtained: t0},
		},
		{
			name: "form-encoded answer with a JSON content type is still read", status: 200, contentType: "text/plain",
			body: `access_token=a2&expires_in=60&token_type=bearer`,
			want: Token{AccessToken: "a2", TokenType: "bearer", Expiry: t0.Add(time.Minute), Obtained: t0},
		},
		{
			name: "no expiry: the JWT's exp tells", status: 200, contentType: "application/json",
			body:   `{"accessToken":"` + jwt + `","refreshToken":"` + refreshJWT + `","validForVideoManager":42}`,
			fields: Fields{AccessToken: "accessToken", RefreshToken: "refreshToken", Extra: []string{"validForVideoManager"}},
			want: Token{AccessToken: jwt, RefreshToken: refreshJWT, Expiry: t0.Add(5 * time.Minute),
				RefreshExpiry: t0.Add(time.Hour), Obtained: t0, Extra: map[string]string{"validForVideoManager": "42"}},
		},
		{
			name: "no expiry and no JWT: unknown", status: 200, contentType: "application/json",
			body: `{"access_token":"opaque"}`,
			want: Token{AccessToken: "opaque", Obtained: t0},
		},
		{
			name: "refresh_expires_in", status: 200, contentType: "application/json",
			body: `{"access_token":"a","expires_in":300,"refresh_token":"r","refresh_expires_in":3600}`,
			want: Token{AccessToken: "a", RefreshToken: "r", Expiry: t0.Add(5 * time.Minute), RefreshExpiry: t0.Add(time.Hour), Obtained: t0},
		},
		{
			name: "RFC 6749 error", status: 400, contentType: "application/json",
			body:    `{"error":"invalid_grant","error_description":"The refresh token is invalid.","hint":"Token has been revoked","message":"The refresh token is invalid."}`,
			wantErr: "400 invalid_grant", wantKind: Rejected,
		},
		{
			name: "Viadeo error with a 200", status: 200, contentType: "application/json",
			body:    `{"error":{"type":"Token revoked","message":["The token was revoked"]}}`,
			wantErr: "200 Token revoked", wantKind: Unavailable,
		},
		{
			name: "HTML from a gateway", status: 502, contentType: "text/html",
			body: `<html><title>Error</title></html>`, wantErr: "HTML", wantKind: Unavailable,
		},
		{
			name: "HTML login page with a 200", status: 200, contentType: "text/html; charset=utf-8",
			body: `<!DOCTYPE html><html>`, wantErr: "HTML", wantKind: Unavailable,
		},
		{
			name: "2xx without access token", status: 200, contentType: "application/json",
			body: `{"token_type":"Bearer"}`, wantErr: `no "access_token"`, wantKind: Unavailable,
		},
		{
			name: "truncated JSON", status: 200, contentType: "application/json",
			body: `{"access_token":"secret-value`, wantErr: "malformed JSON", wantKind: Unavailable,
		},
		{
			// The vendor's free text may quote what it was sent.
			name: "vendor text quoting a secret stays out of the error", status: 400, contentType: "application/json",
			body:    `{"error":"invalid_client","error_description":"client_secret secret-value is wrong"}`,
			wantErr: "400 invalid_client", wantKind: Rejected,
		},
		{
			name: "expires_in NaN", status: 200, contentType: "application/json",
			body: `{"access_token":"a","expires_in":"NaN"}`, wantErr: "expires_in", wantKind: Unavailable,
		},
		{
			name: "expires_in Inf", status: 200, contentType: "application/json",
			body: `{"access_token":"a","expires_in":"+Inf"}`, wantErr: "expires_in", wantKind: Unavailable,
		},
		{
			name: "expires_in absurd", status: 200, contentType: "application/json",
			body: `{"access_token":"a","expires_in":1e300}`, wantErr: "expires_in", wantKind: Unavailable,
		},
		{
			name: "expires_in negative", status: 200, contentType: "application/json",
			body: `{"access_token":"a","expires_in":-5}`, wantErr: "expires_in", wantKind: Unavailable,
		},
		{
			name: "empty", status: 200, body: ``, wantErr: "empty body", wantKind: Unavailable,
		},
		{
			name: "401 without a body is a rejection", status: 401, body: ``, wantErr: "401", wantKind: Rejected,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := tt.fields
			if fields.AccessToken == "" {
				fields = standardFields
			}
			got, err := parseTokenResponse(tt.status, tt.contentType, []byte(tt.body), fields, t0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if k := KindOf(err); k != tt.wantKind {
					t.Errorf("kind = %v, want %v", k, tt.wantKind)
				}
				if strings.Contains(err.Error(), "secret-value") {
					t.Errorf("error quotes the answer: %v", err)
				}
				var re *RetrieveError
				if errors.As(err, &re) && re.Description != "" && strings.Contains(err.Error(), re.Description) {
					t.Errorf("error quotes the vendor's free text %q: %v", re.Description, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Expiry.Equal(tt.want.Expiry) || !got.RefreshExpiry.Equal(tt.want.RefreshExpiry) {
				t.Errorf("expiry = %v / %v, want %v / %v", got.Expiry, got.RefreshExpiry, tt.want.Expiry, tt.want.RefreshExpiry)
			}
			got.Expiry, got.RefreshExpiry, tt.want.Expiry, tt.want.RefreshExpiry = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got.AccessToken != tt.want.AccessToken || got.RefreshToken != tt.want.RefreshToken ||
				got.TokenType != tt.want.TokenType || !got.Obtained.Equal(tt.want.Obtained) ||
				len(got.Extra) != len(tt.want.Extra) || got.Extra["validForVideoManager"] != tt.want.Extra["validForVideoManager"] {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTokenStringHidesSecrets(t *testing.T) {
	tok := Token{AccessToken: "sekrit-access", RefreshToken: "sekrit-refresh", Expiry: t0}
	for _, s := range []string{tok.String(), tok.GoString()} {
		if strings.Contains(s, "sekrit") {
			t.Fatalf("Token's text reveals a secret: %s", s)
		}
	}
}

func TestJWTExpiryIgnoresNonsense(t *testing.T) {
	for _, s := range []string{"", "a.b.c", "a..c", "x.eyJleHAiOiJzb29uIn0.y", "x.eyJleHAiOi0xfQ.y", "x.bm90IGpzb24.y"} {
		if exp := jwtExpiry(s); !exp.IsZero() {
			t.Errorf("jwtExpiry(%q) = %v, want zero", s, exp)
		}
	}
}

// FuzzParseTokenResponse: no answer, however malformed, panics; an accepted
// answer always has an access token; an error never quotes a token.
func FuzzParseTokenResponse(f *testing.F) {
	f.Add(200, "application/json", `{"access_token":"a","expires_in":3600}`)
	f.Add(200, "application/json", `{"access_token":"a","expires_in":"3600","refresh_token":"r"}`)
	f.Add(200, "application/x-www-form-urlencoded", `access_token=a&expires_in=60`)
	f.Add(400, "application/json", `{"error":"invalid_grant","error_description":"x"}`)
	f.Add(200, "application/json", `{"error":{"type":"Token revoked","message":["a","b"]}}`)
	f.Add(503, "text/html", `<html>`)
	f.Add(200, "", `{"access_token":"`+issuer.JWT(t0, nil)+`"}`)
	f.Add(200, "application/json", `{"access_token":"a","expires_in":1e308}`)
	f.Add(200, "application/json", `[1,2]`)
	f.Fuzz(func(t *testing.T, status int, contentType, body string) {
		tok, err := parseTokenResponse(status, contentType, []byte(body), standardFields, t0)
		if err != nil {
			var re *RetrieveError
			if errors.As(err, &re) && len(re.Description) > 210 {
				t.Fatalf("description not shortened: %d bytes", len(re.Description))
			}
			return
		}
		if tok.AccessToken == "" {
			t.Fatal("accepted an answer without an access token")
		}
		if status < 200 || status > 299 {
			t.Fatalf("accepted an answer with status %d", status)
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(t0) {
			t.Fatalf("expiry %v is before issue time", tok.Expiry)
		}
	})
}
