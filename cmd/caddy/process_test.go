package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// testSecret is the robot's AppSecret in the processes' Caddyfiles.
const testSecret = "this is a secret"

// processWait bounds every wait on a Caddy process: generous, because the
// machine may be loaded and the process may run with the race detector.
const processWait = 60 * time.Second

// caddyProcess is Caddy, this package's main, running as a process of its
// own: `caddy run` with a Caddyfile of one plain-HTTP site on a free
// loopback port. Tests kill it as an operator or a crash would.
type caddyProcess struct {
	URL    string // the site's base URL
	cmd    *exec.Cmd
	out    *syncBuffer // what it printed: its log
	exited chan struct{}
}

// startCaddy runs Caddy with site as the site block's content, storing its
// state in dir, and returns once the site accepts connections. The process
// is killed when the test ends, if it still runs.
func startCaddy(t *testing.T, dir, site string) *caddyProcess {
	t.Helper()
	addr := freeAddr(t)
	caddyfile := filepath.Join(dir, "Caddyfile")
	config := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n}\n\nhttp://%s {\n%s\n}\n", addr, site)
	if err := os.WriteFile(caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &caddyProcess{URL: "http://" + addr, out: new(syncBuffer), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "run", "--config", caddyfile, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("caddy's log (pid %d):\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	p.waitUntil(t, "caddy listening on "+addr, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("caddy exited at start:\n%s", p.out.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return p
}

// kill ends the process at once, as a crash does (SIGKILL), and waits for it.
func (p *caddyProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// terminate asks the process to stop (SIGTERM), as every deploy does, and
// returns once it stopped taking connections: it may still finish work.
func (p *caddyProcess) terminate(t *testing.T) {
	t.Helper()
	addr := strings.TrimPrefix(p.URL, "http://")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitUntil(t, "caddy closing its listener", func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

// waitExit waits for the process to exit by itself.
func (p *caddyProcess) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(processWait):
		t.Fatalf("caddy did not exit within %v", processWait)
	}
}

// waitUntil polls cond until it holds, failing the test after processWait.
func (p *caddyProcess) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(processWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliver posts a callback body to the site's /robot as DingTalk does,
// signed now, and returns the status and body of the answer.
func (p *caddyProcess) deliver(t *testing.T, body []byte) (int, string) {
	t.Helper()
	status, answer, err := p.send(body)
	if err != nil {
		t.Fatalf("delivering a callback: %v", err)
	}
	return status, answer
}

// send is deliver for another goroutine than the test's.
func (p *caddyProcess) send(body []byte) (int, string, error) {
	req, err := dingtalktest.NewRequest(p.URL+"/robot", testSecret, body, time.Now())
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{Timeout: processWait}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer), err
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer that a process writes while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
