package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

// TestFindLocalServer checks which delivery URLs are served in-process: only
// those that would connect to a plain-HTTP server of this Caddy.
func TestFindLocalServer(t *testing.T) {
	app := &caddyhttp.App{Servers: map[string]*caddyhttp.Server{
		"all":   {Listen: []string{":8080"}},
		"bound": {Listen: []string{"127.0.0.1:9000-9010", "tcp6/[::1]:9100"}},
		"lan":   {Listen: []string{"10.0.0.5:7000"}},
		"tls":   {Listen: []string{":8443"}, TLSConnPolicies: caddytls.ConnectionPolicies{{}}},
		"unix":  {Listen: []string{"unix//run/caddy.sock"}},
		"http":  {Listen: []string{"0.0.0.0:80"}},
		"bind":  {Listen: []string{"127.0.0.1:8090"}},
		"named": {Listen: []string{"localhost:8091"}},
	}}
	cases := []struct{ target, server, local, remote string }{
		{"http://127.0.0.1:8080/robot", "all", "127.0.0.1:8080", "127.0.0.1:0"},
		{"http://localhost:8080/robot?x=1", "all", "127.0.0.1:8080", "127.0.0.1:0"},
		{"http://[::1]:8080/robot", "all", "[::1]:8080", "[::1]:0"},
		{"http://127.0.0.1:9005/robot", "bound", "127.0.0.1:9005", "127.0.0.1:0"},
		{"http://[::1]:9100/robot", "bound", "[::1]:9100", "[::1]:0"},
		{"http://10.0.0.5:7000/robot", "lan", "10.0.0.5:7000", "10.0.0.5:0"},
		{"http://127.0.0.1/robot", "http", "127.0.0.1:80", "127.0.0.1:0"},
		{"http://localhost:8090/robot", "bind", "127.0.0.1:8090", "127.0.0.1:0"},
		{"http://localhost:8091/robot", "named", "127.0.0.1:8091", "127.0.0.1:0"},
		{"http://127.0.0.1:8091/robot", "named", "127.0.0.1:8091", "127.0.0.1:0"},
		// Another port, another host, TLS, https, a socket: over HTTP.
		{"http://[::1]:8090/robot", "", "", ""},
		{"http://[::1]:8091/robot", "", "", ""},
		{"http://127.0.0.1:8081/robot", "", "", ""},
		{"http://127.0.0.2:9005/robot", "", "", ""},
		{"http://10.0.0.6:8080/robot", "", "", ""},
		{"http://bot.example.com:8080/robot", "", "", ""},
		{"http://127.0.0.1:7000/robot", "", "", ""},
		{"http://127.0.0.1:8443/robot", "", "", ""},
		{"https://127.0.0.1:8080/robot", "", "", ""},
		{"", "", "", ""},
	}
	for _, c := range cases {
		ls := findLocalServer(app, c.target)
		got := ""
		if ls != nil {
			for name, srv := range app.Servers {
				if srv == ls.server {
					got = name
				}
			}
			if ls.local.String() != c.local || ls.remote != c.remote {
				t.Errorf("%s: local %s, remote %s; want %s and %s", c.target, ls.local, ls.remote, c.local, c.remote)
			}
		}
		if got != c.server {
			t.Errorf("%s: server %q, want %q", c.target, got, c.server)
		}
	}
	if findLocalServer(nil, "http://127.0.0.1:8080/robot") != nil {
		t.Error("a config without an http app has no server to deliver to")
	}
}

// TestLocalServerServesNothingOnceStopped checks that a delivery through a
// stopped config's route goes over HTTP instead of through handlers being
// cleaned up.
func TestLocalServerServesNothingOnceStopped(t *testing.T) {
	ls := &localServer{} // no server: serving would fail
	ls.stop()
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/robot", strings.NewReader("{}"))
	if answer, served, err := ls.serve(req); served || err != nil || answer != nil {
		t.Errorf("a stopped server served: %v, %v, %v", answer, served, err)
	}
}
