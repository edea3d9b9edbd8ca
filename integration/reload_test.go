package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Caddy's reload returns once the old config's servers are told to shut
// down, not once they did: until its Shutdown closes its listener, an old
// server still accepts connections on the socket it shares with the new one
// (caddyhttp.App.Stop: "the scheduler might still pause them right before
// calling Shutdown()"). A request sent just after a reload could then be
// served by the config it replaced. The harness gives every server a
// listener wrapper that reports when its server closes it, and load waits
// for the old config's listeners to close before it returns.

func init() { caddy.RegisterModule(closeReporter{}) }

// closeReporter wraps each listener of a config the harness loaded, and
// tells closedListeners when its server closes it.
type closeReporter struct {
	// Generation is the load this config came from.
	Generation uint64 `json:"generation"`
}

func (closeReporter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.test_close_reporter",
		New: func() caddy.Module { return new(closeReporter) },
	}
}

func (c *closeReporter) WrapListener(l net.Listener) net.Listener {
	r := &reportingListener{Listener: l, closed: make(chan struct{})}
	closedListeners.add(c.Generation, r.closed)
	return r
}

// reportingListener closes closed after its listener was closed, when no
// further connection can be accepted through it.
type reportingListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (r *reportingListener) Close() error {
	err := r.Listener.Close()
	r.once.Do(func() { close(r.closed) })
	return err
}

// closedListeners has, for each load, a channel per listener its servers
// opened, closed when that listener is.
var closedListeners = &listenerRegistry{byGeneration: map[uint64][]chan struct{}{}}

// generations numbers the loads of the whole suite: Caddy runs once per
// process, whichever test loads it.
var generations atomic.Uint64

type listenerRegistry struct {
	mu           sync.Mutex
	byGeneration map[uint64][]chan struct{}
}

func (lr *listenerRegistry) add(generation uint64, closed chan struct{}) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.byGeneration[generation] = append(lr.byGeneration[generation], closed)
}

// waitClosed waits until every listener of generation is closed, and says
// whether they were within timeout.
func (lr *listenerRegistry) waitClosed(generation uint64, timeout time.Duration) bool {
	lr.mu.Lock()
	pending := lr.byGeneration[generation]
	delete(lr.byGeneration, generation)
	lr.mu.Unlock()
	deadline := time.After(timeout)
	for _, closed := range pending {
		select {
		case <-closed:
		case <-deadline:
			return false
		}
	}
	return true
}

// withCloseReporter adds a closeReporter for generation to every HTTP
// server of the adapted config. Caddy puts its TLS wrapper first when the
// list has none, as it does for an empty list.
func withCloseReporter(config []byte, generation uint64) ([]byte, error) {
	var cfg map[string]any
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, err
	}
	apps, _ := cfg["apps"].(map[string]any)
	httpApp, _ := apps["http"].(map[string]any)
	servers, _ := httpApp["servers"].(map[string]any)
	for _, s := range servers {
		server := s.(map[string]any)
		wrappers, _ := server["listener_wrappers"].([]any)
		server["listener_wrappers"] = append(wrappers, map[string]any{
			"wrapper":    "test_close_reporter",
			"generation": generation,
		})
	}
	return json.Marshal(cfg)
}

// Right after a reload, a new connection reaches the new config, never the
// one it replaced.
func TestAReloadedConfigAnswersTheNextRequest(t *testing.T) {
	g := startGateway(t, site{Body: `respond "generation 0"`})
	for i := 1; i <= 100; i++ {
		want := fmt.Sprintf("generation %d", i)
		g.load(site{Body: fmt.Sprintf("respond %q", want)})
		if got := g.request("GET", "/", "", "", "").Body; got != want {
			t.Fatalf("the request after reload %d was answered %q, want %q", i, got, want)
		}
	}
}
