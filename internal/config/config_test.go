package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(map[string]string{"ROUTES": "api"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:8080" || c.LogLevel != "info" || c.LogFormat != "json" ||
		c.MaxReplayBytes != 1<<20 || c.TokenTimeout != 10*time.Second || c.ShutdownTimeout != 25*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if len(c.Routes) != 1 || c.Routes[0].Name != "api" || c.Routes[0].Preset != "oauth2" {
		t.Fatalf("routes: %+v", c.Routes)
	}
}

func TestRouteVariablesUsePrefix(t *testing.T) {
	c, err := LoadFrom(map[string]string{
		"ROUTES":                " my-api , other ",
		"MY_API_UPSTREAM_URL":   "https://api.example",
		"MY_API_CLIENT_ID":      "id",
		"MY_API_INJECT":         "query",
		"OTHER_ACCESS_TOKEN":    "tok",
		"OTHER_UPSTREAM_URL":    "https://other.example",
		"UNRELATED_ACCESS_TOKE": "x",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	if r.Name != "my-api" || r.Prefix != "MY_API_" || r.UpstreamURL != "https://api.example" || r.ClientID != "id" || r.Inject != "query" {
		t.Fatalf("my-api: %+v", r)
	}
	if c.Routes[1].AccessToken != "tok" {
		t.Fatalf("other: %+v", c.Routes[1])
	}
}

// Every bad value stops start-up with an error naming its variable.
func TestErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{}, "ROUTES"},
		{map[string]string{"ROUTES": "a", "TOKEN_TIMEOUT": "soon"}, "TOKEN_TIMEOUT"},
		{map[string]string{"ROUTES": "a", "UPSTREAM_TIMEOUT": "0s"}, "UPSTREAM_TIMEOUT"},
		{map[string]string{"ROUTES": "a", "MAX_REPLAY_BYTES": "1MB"}, "MAX_REPLAY_BYTES"},
		{map[string]string{"ROUTES": "a", "MAX_REPLAY_BYTES": "-1"}, "MAX_REPLAY_BYTES"},
		// Regression: a huge value overflowed and dropped every body.
		{map[string]string{"ROUTES": "a", "MAX_REPLAY_BYTES": "9223372036854775807"}, "MAX_REPLAY_BYTES"},
		{map[string]string{"ROUTES": "a", "REPLAY_BUDGET_BYTES": "1000"}, "REPLAY_BUDGET_BYTES"},
		{map[string]string{"ROUTES": "a", "LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
		{map[string]string{"ROUTES": "a", "LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{map[string]string{"ROUTES": "a", "FORWARDED_HEADERS": "maybe"}, "FORWARDED_HEADERS"},
		{map[string]string{"ROUTES": "a", "A_PRESET": "nosuch"}, "A_PRESET"},
		{map[string]string{"ROUTES": "a", "A_RATE_LIMIT": "10"}, "A_RATE_LIMIT"},
		{map[string]string{"ROUTES": "a", "A_RATE_LIMIT_MAX_WAIT": "-1s"}, "A_RATE_LIMIT_MAX_WAIT"},
		{map[string]string{"ROUTES": "a", "A_RATE_LIMIT_MAX_COOLDOWN": "0s"}, "A_RATE_LIMIT_MAX_COOLDOWN"},
	}
	for _, tt := range tests {
		_, err := LoadFrom(tt.env)
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantVar+":") {
			t.Errorf("env %v: err = %v, want one starting with %s:", tt.env, err, tt.wantVar)
		}
	}
}

func TestRedisSettings(t *testing.T) {
	const goodKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	tests := []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"REDIS_URL": "redis://r:6379"}, "TOKEN_ENCRYPTION_KEY: is required when REDIS_URL is set"},
		{map[string]string{"REDIS_URL": "redis://r:6379", "TOKEN_ENCRYPTION_KEY": "c2hvcnQ="}, "TOKEN_ENCRYPTION_KEY: is 5 bytes"},
		{map[string]string{"REDIS_URL": "redis://r:6379", "TOKEN_ENCRYPTION_KEY": goodKey, "TOKEN_ENCRYPTION_KEY_PREVIOUS": "!"}, "TOKEN_ENCRYPTION_KEY_PREVIOUS:"},
		{map[string]string{"REDIS_MODE": "galaxy"}, "REDIS_MODE:"},
		// A key is checked even before any store uses it.
		{map[string]string{"TOKEN_ENCRYPTION_KEY": "c2hvcnQ="}, "TOKEN_ENCRYPTION_KEY: is 5 bytes"},
		{map[string]string{"TOKEN_ENCRYPTION_KEY": goodKey, "TOKEN_ENCRYPTION_KEY_PREVIOUS": "!"}, "TOKEN_ENCRYPTION_KEY_PREVIOUS:"},
		{map[string]string{"TOKEN_ENCRYPTION_KEY_PREVIOUS": goodKey}, "TOKEN_ENCRYPTION_KEY_PREVIOUS: is set without TOKEN_ENCRYPTION_KEY"},
		{map[string]string{"TOKEN_ENCRYPTION_KEY": goodKey}, ""},
		{map[string]string{"REDIS_URL": "redis://r:6379", "TOKEN_ENCRYPTION_KEY": goodKey}, ""},
	}
	for _, tt := range tests {
		tt.env["ROUTES"] = "a"
		_, err := LoadFrom(tt.env)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%v: %v", tt.env, err)
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
			t.Errorf("%v: err = %v, want prefix %q", tt.env, err, tt.wantErr)
		}
	}
	_, err := LoadFrom(map[string]string{"ROUTES": "a", "REDIS_URL": "redis://r:6379"})
	if err == nil || !strings.Contains(err.Error(), "openssl rand -base64 32") {
		t.Errorf("the missing-key error does not say how to make one: %v", err)
	}
}

// Regression: a value with a trailing newline (kubectl create secret
// --from-file) was used as is, and the token became an invalid header.
func TestValuesAreTrimmedAndControlCharactersRefused(t *testing.T) {
	c, err := LoadFrom(map[string]string{"ROUTES": " api\n", "API_ACCESS_TOKEN": "tok\n", "LOG_LEVEL": " debug "})
	if err != nil {
		t.Fatal(err)
	}
	if c.Routes[0].AccessToken != "tok" || c.LogLevel != "debug" {
		t.Fatalf("values not trimmed: %q %q", c.Routes[0].AccessToken, c.LogLevel)
	}
	_, err = LoadFrom(map[string]string{"ROUTES": "api", "API_ACCESS_TOKEN": "to\nk"})
	if err == nil || !strings.HasPrefix(err.Error(), "API_ACCESS_TOKEN:") || strings.Contains(err.Error(), "to\nk") {
		t.Fatalf("err = %v, want one naming API_ACCESS_TOKEN and not quoting it", err)
	}
}

// Regression: a mistyped variable was silently ignored.
func TestMistypedVariablesAreWarnedAbout(t *testing.T) {
	c, err := LoadFrom(map[string]string{
		"ROUTES": "billing", "BILLING_CLIENT_SECERT": "s", "LISTEN_ADRR": ":9", "HOME": "/root", "PATH": "/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"BILLING_CLIENT_SECERT", "did you mean BILLING_CLIENT_SECRET?", "LISTEN_ADRR", "did you mean LISTEN_ADDR?"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "HOME") || strings.Contains(got, "PATH") {
		t.Errorf("warned about unrelated variables: %q", got)
	}
}
