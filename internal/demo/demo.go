// Package demo runs the four vendor emulators and a sidecar configured for
// them: `authsidecar demo`, the ten-second tour.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/internal/app"
	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/emulators"
)

// Demo is a running set of emulators and the sidecar in front of them.
type Demo struct {
	App     *app.App
	BaseURL string
	// Emulators are the vendors' stand-ins, by route name, for pointing
	// your own configuration at.
	Emulators map[string]string
	Commands  []Command
	servers   []*http.Server
	listener  net.Listener
}

// Command is one curl command the demo prints, and what it shows.
type Command struct {
	What string
	Curl string
	// Method, Base, Path and Header are the same call for tests to make.
	Method string
	Base   string
	Path   string
	Header map[string]string
}

// demoCustomers are the viewneo accounts the demo adds.
var demoCustomers = []string{"acme", "globex"}

const (
	clientID     = "demo-client"
	clientSecret = "demo-secret"
	username     = "demo@example.com"
	password     = "demo-password"
)

// Start starts the emulators on loopback ports and builds the sidecar to
// serve on ln. Tokens live 30 seconds (movingimage: 20, its refresh token
// 2 minutes), so refreshes and 401s happen while you watch.
func Start(ln net.Listener, log *zap.Logger) (*Demo, error) {
	d := &Demo{listener: ln, BaseURL: "http://" + ln.Addr().String()}
	opts := emulators.Options{
		ClientID: clientID, ClientSecret: clientSecret, Username: username, Password: password,
		AccessLifetime: 30 * time.Second,
	}
	viewneo := emulators.NewViewneo(opts)
	miOpts := opts
	miOpts.AccessLifetime, miOpts.RefreshLifetime = 20*time.Second, 2*time.Minute
	movingimage := emulators.NewMovingimage(miOpts)
	veem := emulators.NewVeem(opts)
	viadeoOpts := opts
	viadeoOpts.RedirectURL = d.BaseURL + "/oauth/viadeo/callback"
	viadeoOpts.RedirectLoopback = true // for a sidecar of your own, on any local port
	viadeo := emulators.NewViadeo(viadeoOpts)
	viadeo.FormAnswers = true

	urls := map[string]string{}
	for name, emu := range map[string]emulators.Emulator{"viewneo": viewneo, "movingimage": movingimage, "veem": veem, "viadeo": viadeo} {
		url, err := d.serve(emulators.WithControls(emu))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("starting the %s emulator: %w", name, err)
		}
		urls[name] = url
	}

	env := map[string]string{
		"ROUTES": "viewneo,movingimage,veem,viadeo", "LISTEN_ADDR": ln.Addr().String(),
		// viewneo: a refresh token, as if someone had consented earlier.
		"VIEWNEO_UPSTREAM_URL": urls["viewneo"], "VIEWNEO_CLIENT_ID": clientID, "VIEWNEO_CLIENT_SECRET": clientSecret,
		"VIEWNEO_REFRESH_TOKEN": viewneo.IssueRefreshToken(),
		// movingimage: the legacy login.
		"MOVINGIMAGE_UPSTREAM_URL": urls["movingimage"], "MOVINGIMAGE_USERNAME": username, "MOVINGIMAGE_PASSWORD": password,
		// Veem: client credentials.
		"VEEM_UPSTREAM_URL": urls["veem"], "VEEM_CLIENT_ID": clientID, "VEEM_CLIENT_SECRET": clientSecret,
		// Viadeo: not connected until someone consents.
		"VIADEO_UPSTREAM_URL":  urls["viadeo"],
		"VIADEO_AUTHORIZE_URL": urls["viadeo"] + "/oauth-provider/authorize2",
		"VIADEO_TOKEN_URL":     urls["viadeo"] + "/oauth-provider/access_token2",
		"VIADEO_REVOKE_URL":    urls["viadeo"] + "/oauth-provider/revoke_access_token2",
		"VIADEO_CLIENT_ID":     clientID, "VIADEO_CLIENT_SECRET": clientSecret,
		"VIADEO_REDIRECT_URL": viadeoOpts.RedirectURL,
	}
	cfg, err := config.LoadFrom(env)
	if err == nil {
		d.App, err = app.New(cfg, log)
	}
	// Two of your customers' viewneo accounts behind the same route, as
	// `authsidecar accounts add` or consent with ?account= would add them.
	for _, customer := range demoCustomers {
		if err != nil {
			break
		}
		err = d.App.AddAccount(context.Background(), "viewneo", customer, viewneo.IssueRefreshTokenFor(customer+"@customer.example"), false)
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("configuring the demo sidecar: %w", err)
	}

	d.Emulators = urls
	d.Commands = []Command{
		{What: "viewneo playlists (Bearer token from a refresh token; rotated on every refresh)", Method: "GET", Path: "/viewneo/api/v1.0/playlist"},
		{What: "the same route for your customer acme: X-Authsidecar-Account picks its own viewneo account (the emulator says whose token it saw)", Method: "GET", Path: "/viewneo/api/v1.0/playlist",
			Header: map[string]string{"X-Authsidecar-Account": "acme"}},
		{What: "…and for globex, side by side", Method: "GET", Path: "/viewneo/api/v1.0/playlist",
			Header: map[string]string{"X-Authsidecar-Account": "globex"}},
		{What: "movingimage videos (JSON login, JWT expiry, refresh per VideoManager)", Method: "GET", Path: "/movingimage/v1/vms/1001/videos"},
		{What: "Veem (client credentials with Basic; X-Request-Id passes unchanged, so a second run gets Veem's 409 for a reused id)", Method: "POST", Path: "/veem/veem/v1.1/payments",
			Header: map[string]string{"X-Request-Id": "6f1c9c64-2a4e-4d5b-8e1e-3b0b6c2d9a10", "Content-Type": "application/json"}},
		{What: "Viadeo before consent: a JSON error that says where to consent", Method: "GET", Path: "/viadeo/me"},
		{What: "Viadeo consent (a browser works too; the emulator approves at once)", Method: "CONSENT", Path: "/oauth/viadeo/start"},
		{What: "Viadeo after consent (token in the access_token query parameter)", Method: "GET", Path: "/viadeo/me"},
		{What: "make the viewneo emulator expire its tokens early, as a vendor revoking them would…", Method: "POST", Path: emulators.ExpirePath, Base: urls["viewneo"]},
		{What: "…and call again: the sidecar gets 401, refreshes, replays; the log line says replayed", Method: "GET", Path: "/viewneo/api/v1.0/playlist"},
	}
	for i, c := range d.Commands {
		if c.Base == "" {
			d.Commands[i].Base = d.BaseURL
		}
		d.Commands[i].Curl = d.Commands[i].curl()
	}
	return d, nil
}

func (c Command) curl() string {
	base := c.Base
	if c.Method == "CONSENT" {
		return "curl -sL -c /tmp/authsidecar-demo.jar -b /tmp/authsidecar-demo.jar " + base + c.Path
	}
	var b strings.Builder
	b.WriteString("curl -s")
	if c.Method != "GET" {
		b.WriteString(" -X " + c.Method)
	}
	for k, v := range c.Header {
		fmt.Fprintf(&b, " -H '%s: %s'", k, v)
	}
	if c.Method == "POST" && c.Header != nil {
		b.WriteString(` -d '{"amount":1}'`)
	}
	b.WriteString(" " + base + c.Path)
	return b.String()
}

func (d *Demo) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	d.servers = append(d.servers, srv)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// PrintIntro writes what the demo runs and the commands to try.
func (d *Demo) PrintIntro(w io.Writer) {
	fmt.Fprintf(w, "\nauthsidecar demo: emulators of viewneo, movingimage, Veem and Viadeo, and the sidecar on %s\n", d.BaseURL)
	fmt.Fprintf(w, "Tokens live 20-30 seconds: call again after a minute to see refreshes in the log; the last two commands show 401 -> refresh -> replay.\n\n")
	for _, c := range d.Commands {
		fmt.Fprintf(w, "# %s\n%s\n\n", c.What, c.Curl)
	}
	fmt.Fprintf(w, "Health: curl %s/readyz?verbose    Stop: Ctrl-C\n\n", d.BaseURL)
	fmt.Fprintf(w, "To point your own configuration at the emulators (client %s / %s, user %s / %s):\n", clientID, clientSecret, username, password)
	for _, line := range d.OwnConfiguration() {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintf(w, "  VIADEO_REDIRECT_URL=http://127.0.0.1:PORT/oauth/viadeo/callback   (your sidecar's address; any local port)\n")
	fmt.Fprintln(w)
}

// OwnConfiguration is the variables that point a sidecar of your own at the
// emulators: each route's upstream, and Viadeo's auth endpoints, which do
// not follow its upstream (they are on secure.viadeo.com).
func (d *Demo) OwnConfiguration() []string {
	var lines []string
	for _, name := range []string{"viewneo", "movingimage", "veem", "viadeo"} {
		lines = append(lines, fmt.Sprintf("%s_UPSTREAM_URL=%s", strings.ToUpper(name), d.Emulators[name]))
	}
	v := d.Emulators["viadeo"]
	return append(lines,
		"VIADEO_AUTHORIZE_URL="+v+"/oauth-provider/authorize2",
		"VIADEO_TOKEN_URL="+v+"/oauth-provider/access_token2",
		"VIADEO_REVOKE_URL="+v+"/oauth-provider/revoke_access_token2")
}

// Serve serves the sidecar until ctx ends, then drains and stops the
// emulators.
func (d *Demo) Serve(ctx context.Context) error {
	defer d.Close()
	err := d.App.Serve(ctx, d.listener)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Close stops the emulators.
func (d *Demo) Close() {
	for _, s := range d.servers {
		s.Close()
	}
}
