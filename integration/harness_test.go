package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-dingtalk/caddy-dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// testSecret is the first test vector's secret from the protocol notes.
const testSecret = "this is a secret"

func TestMain(m *testing.M) {
	// Caddy writes its storage and autosave under XDG folders: keep them out of the home folder.
	dir, err := os.MkdirTemp("", "caddy-dingtalk-integration-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	// Gateway logs outlive their tests: the suite checks them all at the end.
	logDir = filepath.Join(dir, "logs")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		panic(err)
	}
	http.DefaultTransport = recordingTransport{next: http.DefaultTransport}
	code := m.Run()
	_ = caddy.Stop()
	if !checkSuiteLogs(logDir) {
		os.Exit(1) // keeps the logs
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// logDir holds the log of every gateway of the suite.
var logDir string

// gateway is a Caddy running in this process with one plain-HTTP site on a
// free loopback port.
type gateway struct {
	t       testing.TB
	URL     string // the site's base URL, http://127.0.0.1:<port>
	LogFile string // Caddy's default log, JSON lines at DEBUG
	client  *http.Client
	log     *gatewayLog // for the suite's check that nothing secret is logged

	generation uint64 // the load of the running config, 0 before the first (reload_test.go)
}

// site is what a test puts in the Caddyfile.
type site struct {
	Global     string // extra global options; GATEWAY_URL in them stands for the site's URL
	Body       string // the site block's content
	FilterSign bool   // give the default log the sign filter the README ships
	Extra      string // further site blocks, each with its own address
	Admin      string // the admin endpoint's address; default off

	// The test makes Caddy log a sign at INFO or above on purpose: the
	// suite's log check lets it (see leaks_test.go).
	ExpectSignInLogs bool
}

// startGateway loads the Caddyfile made of s and stops Caddy when the test ends.
func startGateway(t testing.TB, s site) *gateway {
	t.Helper()
	logFile, err := os.CreateTemp(logDir, strings.ReplaceAll(t.Name(), "/", "_")+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	g := &gateway{
		t:       t,
		URL:     "http://127.0.0.1:" + freePort(t),
		LogFile: logFile.Name(),
		client:  &http.Client{Timeout: 15 * time.Second},
		log:     leakCheck.addLog(t.Name(), logFile.Name()),
	}
	g.load(s)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		if !closedListeners.waitClosed(g.generation, 10*time.Second) {
			t.Error("caddy's servers still accept connections 10 s after it stopped")
		}
		if t.Failed() {
			logs, _ := os.ReadFile(g.LogFile)
			t.Logf("caddy log:\n%s", logs)
		}
	})
	return g
}

// load (re)loads the configuration; Caddy swaps it in gracefully.
func (g *gateway) load(s site) {
	g.t.Helper()
	format := "format json"
	if s.FilterSign {
		format = "format filter {\n\t\t\twrap json\n\t\t\trequest>headers>Sign delete\n\t\t}"
	}
	admin := s.Admin
	if admin == "" {
		admin = "off"
	}
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	log {
		output file %s
		%s
		level DEBUG
	}
	%s
}

%s {
	%s
}
%s
`, admin, g.LogFile, format, strings.ReplaceAll(s.Global, "GATEWAY_URL", g.URL), g.URL, s.Body, s.Extra)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		g.t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") { // test Caddyfiles are indented for Go, not caddy fmt
			g.t.Logf("Caddyfile warning: %s", w)
		}
	}
	leakCheck.loaded(g.log, s, cfg)
	generation := generations.Add(1)
	if cfg, err = withCloseReporter(cfg, generation); err != nil {
		g.t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		g.t.Fatalf("loading config: %v\n%s", err, caddyfile)
	}
	if g.generation != 0 && !closedListeners.waitClosed(g.generation, 10*time.Second) {
		g.t.Fatal("the replaced config's servers still accept connections 10 s after the reload")
	}
	g.generation = generation
	// The old config's server closes its idle keep-alive connections; a POST
	// on one of them would fail rather than be retried.
	g.client.CloseIdleConnections()
}

// response is what the client saw.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// do sends req and reads the whole answer.
func (g *gateway) do(req *http.Request) response {
	g.t.Helper()
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("request failed: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("reading response: %v", err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// post sends body to path signed with secret now, after letting edit change the request.
func (g *gateway) post(path, secret string, body []byte, edit ...func(*http.Request)) response {
	g.t.Helper()
	req, err := dingtalktest.NewRequest(g.URL+path, secret, body, time.Now())
	if err != nil {
		g.t.Fatal(err)
	}
	for _, e := range edit {
		e(req)
	}
	return g.do(req)
}

// logs returns everything Caddy logged so far.
func (g *gateway) logs() string {
	g.t.Helper()
	data, err := os.ReadFile(g.LogFile)
	if err != nil && !os.IsNotExist(err) {
		g.t.Fatal(err)
	}
	return string(data)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// hostPort strips the scheme from an httptest server's URL, for reverse_proxy.
func hostPort(url string) string {
	return strings.TrimPrefix(url, "http://")
}

// callback returns a realistic text callback body with a fresh msgId.
func callback(text string) []byte {
	return dingtalktest.Callback{Text: text, Group: true}.Body()
}

// mustEqualBytes fails when got differs from want, showing both.
func mustEqualBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got: %q\nwant: %q", what, got, want)
	}
}

// quietWindow is how long a "nothing more happened" check watches. What it
// looks for (a second post, a late answer, a second delivery, a contacted
// host) comes from a job that just did the same thing on loopback in
// milliseconds: a second is many times that, also on a loaded machine.
// TestNothingMoreCatchesALateEvent is the positive control: a post that
// comes three quarters into the window, through a real relay, is caught.
const quietWindow = time.Second

// count is something a "nothing more" check watches, and the value it must keep.
type count struct {
	what string
	want int
	now  func() int
}

// nothingMore fails the test when, within quietWindow, any of counts is not
// at the value it must keep. Wait for what must happen first (waitFor).
func nothingMore(t testing.TB, counts ...count) {
	t.Helper()
	if change := changeWithin(quietWindow, counts); change != "" {
		t.Fatal(change)
	}
}

// changeWithin watches counts for window and describes the first that is
// not at its value, or returns "".
func changeWithin(window time.Duration, counts []count) string {
	deadline := time.Now().Add(window)
	for {
		for _, c := range counts {
			if got := c.now(); got != c.want {
				return fmt.Sprintf("%s: %d, want %d (within %v of the last awaited event)", c.what, got, c.want, window)
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
}
