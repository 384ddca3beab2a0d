package proxy

import (
	"errors"
	"net/url"
	"strings"
)

// splitRoute splits an escaped request path into the route name (its first
// segment) and the rest, which keeps its leading slash.
func splitRoute(escapedPath string) (name, rest string, ok bool) {
	if !strings.HasPrefix(escapedPath, "/") {
		return "", "", false
	}
	name, rest, found := strings.Cut(escapedPath[1:], "/")
	if found {
		rest = "/" + rest
	}
	return name, rest, name != ""
}

var (
	errBadPath     = errors.New("the request path has an invalid escape")
	errEncodedDots = errors.New("the request path has an encoded slash next to a dot segment")
	errDotParams   = errors.New("the request path has a dot segment with a path parameter (..;)")
)

// confinePath turns the escaped rest of a request path into one that stays
// under the route's upstream: dot segments, in any encoding, are resolved
// against the route's root and cannot climb above it; empty segments (which
// would make "//host" look like an authority) are dropped. Segments are
// otherwise passed as the caller encoded them, so an encoded slash stays an
// encoded slash inside one segment. The result is "" or starts with "/".
func confinePath(escapedRest string) (string, error) {
	if escapedRest == "" {
		return "", nil
	}
	segments := strings.Split(escapedRest, "/")
	kept := make([]string, 0, len(segments))
	for _, seg := range segments {
		if seg == "" {
			continue
		}
		decoded, err := url.PathUnescape(seg)
		if err != nil {
			return "", errBadPath
		}
		if strings.ContainsAny(decoded, "/\\") && hasDotSegment(decoded) {
			// "..%2f..%2f" is one segment to us but may be climbed by an
			// upstream that decodes before it resolves dots.
			return "", errEncodedDots
		}
		if dots, _, hasParams := strings.Cut(decoded, ";"); hasParams && (dots == "." || dots == "..") {
			// Servers that strip path parameters (Tomcat, Spring) read
			// "..;x" as "..": it would climb above the route's root there.
			return "", errDotParams
		}
		switch decoded {
		case ".":
			continue
		case "..":
			if len(kept) > 0 {
				kept = kept[:len(kept)-1]
			}
			continue
		}
		kept = append(kept, seg)
	}
	out := "/" + strings.Join(kept, "/")
	last := segments[len(segments)-1]
	if len(kept) > 0 && (last == "" || isDotSegment(last)) {
		out += "/"
	}
	return out, nil
}

// hasDotSegment reports whether s, split at slashes and backslashes, has a
// "." or ".." part.
func hasDotSegment(s string) bool {
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == "." || part == ".." {
			return true
		}
	}
	return false
}

func isDotSegment(seg string) bool {
	decoded, err := url.PathUnescape(seg)
	return err == nil && (decoded == "." || decoded == "..")
}

// upstreamURL is where a call with the confined rest path and raw query goes:
// the upstream's scheme and host, its base path joined with rest.
func upstreamURL(upstream *url.URL, confinedRest, rawQuery string) (*url.URL, error) {
	base := strings.TrimSuffix(upstream.EscapedPath(), "/")
	raw := base + confinedRest
	if raw == "" {
		raw = "/"
	}
	p, err := url.PathUnescape(raw)
	if err != nil {
		return nil, errBadPath
	}
	u := &url.URL{
		Scheme:   upstream.Scheme,
		Host:     upstream.Host,
		Path:     p,
		RawQuery: rawQuery,
	}
	if raw != u.EscapedPath() {
		// Keep the caller's encoding (an encoded slash, say) on the wire.
		u.RawPath = raw
	}
	return u, nil
}

// withoutQueryParam removes every occurrence of param from a raw query, and
// every parameter an upstream framework could read as param (ACCESS_TOKEN,
// access_token[], access.token, which PHP turns into access_token), and
// keeps the rest in the caller's order and encoding.
func withoutQueryParam(rawQuery, param string) string {
	if rawQuery == "" || param == "" {
		return rawQuery
	}
	want := paramLookAlike(param)
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, part := range parts {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		if paramLookAlike(key) == want {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

// paramLookAlike folds a parameter name the way upstream frameworks blur
// them: case, separators, and a trailing array or map suffix ("[]", "[0]").
func paramLookAlike(name string) string {
	if i := strings.IndexByte(name, '['); i > 0 {
		name = name[:i]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
