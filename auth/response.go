package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/internal/vendortext"
)

// Fields names the members of a token answer. Vendors disagree: most follow
// RFC 6749 (snake_case), movingimage's legacy login answers in camelCase.
type Fields struct {
	AccessToken      string
	RefreshToken     string
	ExpiresIn        string
	RefreshExpiresIn string
	TokenType        string
	// Extra lists non-secret answer members to keep in Token.Extra.
	Extra []string
}

// standardFields are the member names of RFC 6749 section 5.1.
var standardFields = Fields{
	AccessToken:      "access_token",
	RefreshToken:     "refresh_token",
	ExpiresIn:        "expires_in",
	RefreshExpiresIn: "refresh_expires_in",
	TokenType:        "token_type",
}

// maxAnswerBytes bounds how much of a token answer is read. Real answers are
// a few KiB; a token endpoint streaming garbage must not fill our memory.
const maxAnswerBytes = 1 << 20

// parseTokenResponse turns a token endpoint's answer into a Token. It reads
// JSON and form-encoded answers whatever the Content-Type says (vendors get it
// wrong), takes expires_in as a number or a string, and falls back to a JWT's
// exp claim when the answer has no expiry. Errors name what was wrong with the
// answer and never quote its secrets.
func parseTokenResponse(status int, contentType string, body []byte, f Fields, now time.Time) (Token, error) {
	values, format, err := decodeAnswer(contentType, body)
	if err != nil {
		if status < 200 || status > 299 {
			return Token{}, &RetrieveError{StatusCode: status, Problem: vendortext.Shorten(err.Error(), 200)}
		}
		return Token{}, fmt.Errorf("answered %d with %w", status, err)
	}

	code, description := errorFields(values)
	if status < 200 || status > 299 {
		return Token{}, &RetrieveError{StatusCode: status, Code: code, Description: description}
	}
	// Some vendors (Viadeo) report errors with a 200.
	if code != "" {
		return Token{}, &RetrieveError{StatusCode: status, Code: code, Description: description}
	}

	t := Token{
		AccessToken:  stringField(values, f.AccessToken),
		RefreshToken: stringField(values, f.RefreshToken),
		TokenType:    stringField(values, f.TokenType),
		Obtained:     now,
	}
	if t.AccessToken == "" {
		return Token{}, fmt.Errorf("answered %d with a %s body that has no %q", status, format, f.AccessToken)
	}
	secs, ok, err := secondsField(values, f.ExpiresIn)
	switch {
	case err != nil:
		return Token{}, fmt.Errorf("answered %d with a malformed answer: %w", status, err)
	case ok:
		t.Expiry = now.Add(secs)
	default:
		t.Expiry = jwtExpiry(t.AccessToken)
	}
	if t.RefreshToken != "" {
		secs, ok, err := secondsField(values, f.RefreshExpiresIn)
		switch {
		case err != nil:
			return Token{}, fmt.Errorf("answered %d with a malformed answer: %w", status, err)
		case ok:
			t.RefreshExpiry = now.Add(secs)
		default:
			t.RefreshExpiry = jwtExpiry(t.RefreshToken)
		}
	}
	for _, name := range f.Extra {
		if v := stringField(values, name); v != "" {
			if t.Extra == nil {
				t.Extra = make(map[string]string)
			}
			t.Extra[name] = v
		}
	}
	return t, nil
}

// decodeAnswer returns the answer's top-level members, each a string, a
// json.Number or, for JSON, any other decoded value.
func decodeAnswer(contentType string, body []byte) (map[string]any, string, error) {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return nil, "", fmt.Errorf("an empty body")
	case trimmed[0] == '{':
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		var values map[string]any
		if err := dec.Decode(&values); err != nil {
			return nil, "", fmt.Errorf("malformed JSON (%s)", describeJSONError(err))
		}
		return values, "JSON", nil
	case trimmed[0] == '<' || strings.Contains(mediaType, "html") || strings.Contains(mediaType, "xml"):
		return nil, "", fmt.Errorf("HTML or XML (%s), not a token answer", orUnknown(mediaType))
	case strings.Contains(mediaType, "json"):
		return nil, "", fmt.Errorf("a %s body that is not a JSON object", orUnknown(mediaType))
	}
	q, err := url.ParseQuery(string(trimmed))
	if err != nil || len(q) == 0 {
		return nil, "", fmt.Errorf("a %s body that is neither JSON nor form-encoded", orUnknown(mediaType))
	}
	values := make(map[string]any, len(q))
	for k, v := range q {
		values[k] = v[0]
	}
	return values, "form-encoded", nil
}

// describeJSONError names where JSON broke without quoting the input.
func describeJSONError(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return "not an object"
	}
	return "unreadable"
}

// orUnknown names a media type for an error message: the vendor's text,
// bounded.
func orUnknown(mediaType string) string {
	if mediaType == "" {
		return "no content type"
	}
	return vendortext.Shorten(mediaType, 64)
}

// errorFields reads an error answer: RFC 6749's error and error_description,
// Laravel's message, or Viadeo's {"error":{"type","message":[…]}}.
func errorFields(values map[string]any) (code, description string) {
	switch e := values["error"].(type) {
	case string:
		code = e
	case map[string]any:
		code, _ = e["type"].(string)
		description = joinMessages(e["message"])
	}
	if d := stringField(values, "error_description"); d != "" {
		description = d
	} else if description == "" && code != "" {
		description = stringField(values, "message")
	}
	return vendortext.Shorten(code, 64), vendortext.Shorten(description, 200)
}

func joinMessages(v any) string {
	switch m := v.(type) {
	case string:
		return m
	case []any:
		var parts []string
		for _, p := range m {
			if s, ok := p.(string); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "; ")
	}
	return ""
}

func stringField(values map[string]any, name string) string {
	if name == "" {
		return ""
	}
	switch v := values[name].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// maxLifetime bounds a token's lifetime: beyond ten years an answer is
// nonsense, and the conversion to a Duration would overflow.
const maxLifetime = 10 * 365 * 24 * time.Hour

// secondsField reads a lifetime in seconds, given as a number or a string.
// ok is false when the member is absent; a member that is present but not a
// positive, finite, sane number of seconds (NaN, Inf, -5, 1e300) is an error,
// not a token that never expires.
func secondsField(values map[string]any, name string) (d time.Duration, ok bool, err error) {
	s := stringField(values, name)
	if s == "" {
		return 0, false, nil
	}
	secs, perr := strconv.ParseFloat(s, 64)
	if perr != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs <= 0 || secs > maxLifetime.Seconds() {
		return 0, false, fmt.Errorf("%s is not a lifetime in seconds", name)
	}
	return time.Duration(secs * float64(time.Second)), true, nil
}
