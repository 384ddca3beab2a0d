package app

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/emulators"
	"github.com/authsidecar/authsidecar/internal/fakeclock"
)

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// login, token and revoke, as an operator runs them, against the Viadeo
// emulator.
func TestOperatorCommands(t *testing.T) {
	clock := fakeclock.New(time.Now())
	redirect := "http://" + freeLoopbackAddr(t) + "/callback"
	o := vendorOptions(clock)
	o.RedirectURL = redirect
	emu := emulators.NewViadeo(o)
	emuURL := serve(t, emu)
	a, side := sidecar(t, map[string]string{
		"ROUTES": "viadeo", "VIADEO_UPSTREAM_URL": emuURL,
		"VIADEO_AUTHORIZE_URL": emuURL + "/oauth-provider/authorize2",
		"VIADEO_TOKEN_URL":     emuURL + "/oauth-provider/access_token2",
		"VIADEO_REVOKE_URL":    emuURL + "/oauth-provider/revoke_access_token2",
		"VIADEO_CLIENT_ID":     demoClientID, "VIADEO_CLIENT_SECRET": demoClientSecret, "VIADEO_REDIRECT_URL": redirect,
	}, clock)

	// login: the operator opens the printed URL; the callback lands on
	// the command's own listener.
	pr, pw := io.Pipe()
	var out bytes.Buffer
	loginDone := make(chan error, 1)
	go func() {
		err := a.Login(context.Background(), "viadeo", "", io.MultiWriter(pw, &out))
		pw.Close()
		loginDone <- err
	}()
	var authorizeURL string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "http") {
			authorizeURL = line
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if authorizeURL == "" {
		t.Fatal("login printed no authorize URL")
	}
	status, page := newBrowser(t).get(t, authorizeURL)
	if status != http.StatusOK || !strings.Contains(page, "Connected") {
		t.Fatalf("callback: %d %s", status, page)
	}
	if err := <-loginDone; err != nil {
		t.Fatalf("login: %v", err)
	}
	if !strings.Contains(out.String(), "VIADEO_ACCESS_TOKEN=viadeo-") {
		t.Fatalf("login output lacks the variable to keep: %s", out.String())
	}
	call(t, "GET", side+"/viadeo/me", nil, nil).echo(t)

	// token prints what the sidecar sends.
	var tok bytes.Buffer
	if err := a.PrintToken(context.Background(), "viadeo", &tok); err != nil {
		t.Fatal(err)
	}
	printed := strings.TrimSpace(tok.String())
	if !strings.Contains(out.String(), printed) {
		t.Fatalf("token printed %q, not the one login stored", printed)
	}

	// revoke: the vendor no longer takes it.
	if err := a.Revoke(context.Background(), "viadeo"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(emuURL + "/me?access_token=" + printed)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked token still works at the vendor: %d", resp.StatusCode)
	}
	if err := a.PrintToken(context.Background(), "viadeo", io.Discard); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("after revoke, token: %v; want a consent error", err)
	}
}
