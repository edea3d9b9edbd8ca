package integration

import (
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// resources are what a leak would pile up: goroutines and open files
// (sockets included).
type resources struct{ goroutines, fds int }

func countResources(t testing.TB) resources {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return resources{goroutines: runtime.NumGoroutine(), fds: len(fds)}
}

// resourceCheck compares the goroutines and open files of this process while
// a gateway runs, before and after a test's faults. Idle keep-alive
// connections are not leaks, so both counts are taken after closing them on
// every side: the gateway's client, the peers' servers (which also drops
// Caddy's pooled upstream connections) and the default transport that the
// relay's webhook client uses.
type resourceCheck struct {
	g      *gateway
	peers  []peer
	before resources
}

// peer is a test server the gateway talks to, such as a dingtalktest.Recorder.
type peer interface{ CloseClientConnections() }

// startResourceCheck takes the baseline: call it once the gateway has answered a
// first request, so that everything it sets up lazily already exists.
func startResourceCheck(t *testing.T, g *gateway, peers ...peer) *resourceCheck {
	t.Helper()
	l := &resourceCheck{g: g, peers: peers}
	l.dropIdle()
	l.before = l.stable(t)
	return l
}

func (l *resourceCheck) dropIdle() {
	l.g.client.CloseIdleConnections()
	for _, p := range l.peers {
		p.CloseClientConnections()
	}
	if t, ok := http.DefaultTransport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// stable samples until two counts a moment apart agree, for at most 2 s.
func (l *resourceCheck) stable(t *testing.T) resources {
	last := countResources(t)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		now := countResources(t)
		if now == last {
			break
		}
		last = now
	}
	return last
}

// resourceSlack absorbs what comes and goes on its own (a timer's goroutine, a
// connection being torn down); a leak per request exceeds it quickly.
const resourceSlack = 3

// verify polls for up to 15 s until the counts are back near the baseline,
// and otherwise fails, showing the goroutines that remain.
func (l *resourceCheck) verify(t *testing.T) {
	t.Helper()
	var now resources
	for deadline := time.Now().Add(15 * time.Second); ; {
		l.dropIdle()
		now = countResources(t)
		if now.goroutines <= l.before.goroutines+resourceSlack && now.fds <= l.before.fds+resourceSlack {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stacks strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
	t.Errorf("leak: %d goroutines and %d open files, %d and %d before\n%s",
		now.goroutines, now.fds, l.before.goroutines, l.before.fds, stacks.String())
}
