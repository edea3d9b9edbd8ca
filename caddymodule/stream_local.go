package caddymodule

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A Stream delivery URL that names a server of this Caddy (deliver_to
// http://127.0.0.1:8080/robot beside a site on :8080) is served in-process:
// the signed request runs through that server's whole handler chain
// (matchers, routes, logs, metrics, error routes), as the loopback POST
// would, without the connection. The loopback POST was a third of Caddy's
// CPU per bridged message, and most of the gap to the same route fed over
// HTTP (`go run ./bench -stream`, BENCHMARKS.md, Stream mode).

// localServer is a server of this Caddy that a delivery URL connects to.
type localServer struct {
	server *caddyhttp.Server
	// local is the listener address the URL connects to; remote is the
	// loopback address a connection to it would come from.
	local  net.Addr
	remote string

	// Requests are served under a read lock; stop takes the write lock.
	mu      sync.RWMutex
	stopped bool
}

// findLocalServer returns the server of app that target, an http:// URL,
// would connect to: one without TLS whose listen address covers the URL's
// port, on a host the URL's host reaches (see reaches). It returns nil for
// any other URL, https ones included (their TLS is left to the loopback
// request), and for a nil app.
func findLocalServer(app *caddyhttp.App, target string) *localServer {
	u, err := url.Parse(target)
	if app == nil || err != nil || u.Scheme != "http" {
		return nil
	}
	host, portText := u.Hostname(), u.Port()
	if portText == "" {
		portText = "80"
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	slices.Sort(names) // Caddy refuses two servers on one address; any order finds the same
	for _, name := range names {
		srv := app.Servers[name]
		if len(srv.TLSConnPolicies) > 0 {
			continue
		}
		for _, listen := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(listen)
			if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() || uint(port) < na.StartPort || uint(port) > na.EndPort {
				continue
			}
			if ip, ok := reaches(host, na.Host); ok {
				return &localServer{server: srv, local: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))),
					remote: netip.AddrPortFrom(ip, 0).String()}
			}
		}
	}
	return nil
}

// reaches reports whether a connection to host reaches a listener on
// listen (a listen address's host), and the address it would arrive at:
// the same host; a loopback host and every interface; localhost and a
// loopback address.
func reaches(host, listen string) (netip.Addr, bool) {
	loopback := netip.MustParseAddr("127.0.0.1")
	hostIP, hostErr := netip.ParseAddr(host)
	listenIP, listenErr := netip.ParseAddr(listen)
	switch {
	case host == listen && hostErr == nil:
		return hostIP, true
	case host == listen && host == "localhost":
		return loopback, true
	case listen == "" || (listenErr == nil && listenIP.IsUnspecified()):
		if hostErr == nil && hostIP.IsLoopback() {
			return hostIP, true
		}
		return loopback, host == "localhost"
	case host == "localhost" && listenErr == nil && listenIP.IsLoopback():
		return listenIP, true
	case listen == "localhost" && hostErr == nil && hostIP == loopback:
		return hostIP, true
	}
	return netip.Addr{}, false
}

// serve runs req, a request built for the URL, through the server's handler
// chain, and records the answer as the loopback POST would have read it. A
// handler that panics (reverse_proxy aborts a broken answer so) fails the
// delivery as the connection it would have dropped. Once the server's
// config stopped, it serves nothing and reports served false: the URL is
// then another config's to answer, over HTTP.
func (ls *localServer) serve(req *http.Request) (answer *streamAnswer, served bool, err error) {
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	if ls.stopped {
		return nil, false, nil
	}
	// What net/http gives a request it read from a connection: the path
	// alone in URL, the request line's target, the peer and local addresses.
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, ls.local))
	req.RequestURI = req.URL.RequestURI()
	req.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	req.RemoteAddr = ls.remote
	req.Header.Set("Content-Length", strconv.FormatInt(req.ContentLength, 10))

	rec := newRecordedResponse(maxReplySize)
	defer func() {
		if p := recover(); p != nil {
			answer, err = nil, fmt.Errorf("the route aborted its answer: %v", p)
		}
	}()
	ls.server.ServeHTTP(rec, req)
	return &streamAnswer{status: rec.statusCode(), header: rec.header, body: rec.body.Bytes(), overflow: rec.overflow, inProcess: true}, true, nil
}

// stop waits for the requests being served, as the server's own graceful
// stop waits for those of its connections, and sends later ones over HTTP:
// the config stops, and its handlers are cleaned up next. A delivery that
// began before a reload may still be retried through this config's route.
func (ls *localServer) stop() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.stopped = true
}
