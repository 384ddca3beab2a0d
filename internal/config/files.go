package config

import (
	"fmt"
	"os"
	"strings"
	"unicode"

	"github.com/authsidecar/authsidecar/internal/filestamp"
)

// Every secret variable has a _FILE twin naming a file that holds the value
// (a mounted Kubernetes Secret): the value is read from it, trimmed, and
// re-read when it changes (internal/app watches SecretFiles).
var (
	globalSecrets = []string{"TOKEN_ENCRYPTION_KEY", "TOKEN_ENCRYPTION_KEY_PREVIOUS", "CLIENT_KEYS", "ADMIN_TOKEN", "REDIS_URL"}
	routeSecrets  = []string{"CLIENT_SECRET", "PASSWORD", "ACCESS_TOKEN", "REFRESH_TOKEN"}
)

// RouteSecretVariable reports whether variable is a route's secret that has
// a _FILE twin, such as VEEM_CLIENT_SECRET.
func RouteSecretVariable(variable string) bool {
	for _, s := range routeSecrets {
		if prefix, ok := strings.CutSuffix(variable, "_"+s); ok && prefix != "" && strings.Trim(prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == "" {
			return true
		}
	}
	return false
}

// SecretFile is a secret variable whose value comes from a file.
type SecretFile struct {
	// Variable is the variable the file stands for, prefix included
	// (BILLING_CLIENT_SECRET); Setting is it without the route's prefix.
	Variable, Setting string
	// Route is the route's name; empty for the sidecar's own variables.
	Route string
	Path  string
	// Stamp is the file's stamp (internal/filestamp) taken just before it
	// was read at start, so that a watcher started later still sees a
	// change made in between.
	Stamp string
	// ReadByRoute marks a key, certificate, assertion or token file the
	// route reads itself when it needs it (keeping the last good value): it
	// is watched only so that one that stops reading shows.
	ReadByRoute bool
}

// credentialFiles are the route's key, certificate, assertion and token
// files.
func (r Route) credentialFiles() []SecretFile {
	var files []SecretFile
	for _, f := range []struct{ setting, path string }{
		{"CLIENT_KEY", r.ClientKeyFile}, {"CLIENT_ASSERTION", r.ClientAssertionFile},
		{"ASSERTION", r.AssertionFile}, {"SUBJECT_TOKEN", r.SubjectTokenFile}, {"ACTOR_TOKEN", r.ActorTokenFile},
		{"TLS_CERT", r.TLSCertFile}, {"TLS_KEY", r.TLSKeyFile}, {"TLS_CA", r.TLSCAFile},
	} {
		if f.path == "" {
			continue
		}
		stamp, _ := filestamp.Of(f.path)
		files = append(files, SecretFile{Variable: r.Prefix + f.setting, Setting: f.setting, Route: r.Name,
			Path: f.path, Stamp: stamp, ReadByRoute: true})
	}
	return files
}

// CheckReadable reports whether a file the route reads itself still reads
// and is not empty. Errors name the variable, never the content.
func CheckReadable(f SecretFile) error {
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		return fmt.Errorf("%s_FILE: %w", f.Variable, err)
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return fmt.Errorf("%s_FILE: the file is empty", f.Variable)
	}
	return nil
}

// ReadSecretFile reads a secret's file: trimmed (a Secret's file often
// ends in a newline), no control character inside. Errors name the _FILE
// variable, never the value.
func ReadSecretFile(f SecretFile) (string, error) {
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", f.Variable, err)
	}
	v := strings.TrimSpace(string(raw))
	if strings.ContainsFunc(v, unicode.IsControl) {
		return "", fmt.Errorf("%s_FILE: the file has a control character (a line break or tab) inside its value", f.Variable)
	}
	return v, nil
}

// resolveFiles puts the value of each prefix+X_FILE in environ as
// prefix+X. Setting both is an error naming both.
func resolveFiles(environ map[string]string, prefix, route string, settings []string) ([]SecretFile, error) {
	var files []SecretFile
	for _, s := range settings {
		v := prefix + s
		path, ok := environ[v+"_FILE"]
		if !ok || path == "" {
			continue
		}
		if environ[v] != "" {
			return nil, fmt.Errorf("%s and %s_FILE: are both set; set one", v, v)
		}
		f := SecretFile{Variable: v, Setting: s, Route: route, Path: path}
		f.Stamp, _ = filestamp.Of(path) // a failed stat fails the read below
		value, err := ReadSecretFile(f)
		if err != nil {
			return nil, err
		}
		environ[v] = value
		files = append(files, f)
	}
	return files, nil
}

// fileTwins are the _FILE names of settings, for telling known variables
// from mistyped ones.
func fileTwins(settings []string) []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s + "_FILE"
	}
	return out
}
