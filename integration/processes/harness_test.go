package processes

import (
	"context"
	"encoding/json"
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

	// The binary under test is built from these: importing them makes go
	// test's cache see their changes, which it would not for a binary that
	// TestMain builds.
	_ "github.com/caddy-dingtalk/caddy-dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

const testSecret = "this is a secret"

// caddyBinary is ./cmd/caddy, built once for the package.
var caddyBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-dingtalk-processes-")
	if err != nil {
		panic(err)
	}
	caddyBinary = filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", caddyBinary, "github.com/caddy-dingtalk/caddy-dingtalk/cmd/caddy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// deadline bounds every wait for an event; the tests' leases are short,
// so this is never the time an event normally takes.
const deadline = 30 * time.Second

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %v: still waiting for %s", deadline, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// instance is one caddy process serving one Caddyfile on a fixed loopback
// port, which it keeps across restarts.
type instance struct {
	t         *testing.T
	name      string
	URL       string
	dir       string
	caddyfile string
	log       string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startInstance writes the Caddyfile with site as the site block's body
// and runs caddy on it; the test's end kills what still runs.
func startInstance(t *testing.T, name, site string) *instance {
	t.Helper()
	dir := t.TempDir()
	i := &instance{t: t, name: name, URL: "http://127.0.0.1:" + freePort(t), dir: dir,
		caddyfile: filepath.Join(dir, "Caddyfile"), log: filepath.Join(dir, "caddy.log")}
	config := fmt.Sprintf(`{
	admin off
	persist_config off
	log {
		output file %q
		format json
		level INFO
	}
}

%s {
%s
}
`, i.log, i.URL, site)
	if err := os.WriteFile(i.caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	i.start()
	t.Cleanup(func() {
		i.kill()
		if t.Failed() {
			logs, _ := os.ReadFile(i.log)
			t.Logf("%s's log:\n%s", name, logs)
		}
	})
	return i
}

// start runs caddy and returns once it accepts connections.
func (i *instance) start() {
	i.t.Helper()
	cmd := exec.Command(caddyBinary, "run", "--config", i.caddyfile, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(i.dir, "config"), "XDG_DATA_HOME="+filepath.Join(i.dir, "data"))
	out, err := os.OpenFile(i.log+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		i.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	if err := cmd.Start(); err != nil {
		i.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	i.mu.Lock()
	i.cmd, i.exited = cmd, exited
	i.mu.Unlock()
	waitFor(i.t, i.name+" to listen", func() bool {
		select {
		case <-exited:
			out, _ := os.ReadFile(i.log + ".out")
			i.t.Fatalf("%s exited at start:\n%s", i.name, out)
		default:
		}
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(i.URL, "http://"), time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (i *instance) kill() {
	i.mu.Lock()
	cmd, exited := i.cmd, i.exited
	i.cmd = nil
	i.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// stop sends SIGTERM, as a deploy does, and returns how long the process
// took to exit; it fails the test if it takes longer than within.
func (i *instance) stop(within time.Duration) time.Duration {
	i.t.Helper()
	i.mu.Lock()
	cmd, exited := i.cmd, i.exited
	i.cmd = nil
	i.mu.Unlock()
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-exited
		i.t.Fatalf("%s did not exit within %v of SIGTERM", i.name, within)
	}
	return time.Since(start)
}

// logged counts the lines of the instance's log (across its restarts)
// whose message contains msg.
func (i *instance) logged(msg string) int {
	data, _ := os.ReadFile(i.log)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct{ Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && strings.Contains(entry.Msg, msg) {
			n++
		}
	}
	return n
}

// deliver posts a callback as DingTalk does, signed now; err is set when
// the instance did not answer (it was killed meanwhile).
func (i *instance) deliver(body []byte) (status int, answer string, err error) {
	req, err := dingtalktest.NewRequest(i.URL+"/robot", testSecret, body, time.Now())
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{Timeout: deadline}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answerBody, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answerBody), err
}

// mustAck delivers body to an async instance and checks the empty ack.
func (i *instance) mustAck(body []byte) {
	i.t.Helper()
	status, answer, err := i.deliver(body)
	if err != nil || status != http.StatusOK || answer != `{"msgtype":"empty"}` {
		i.t.Fatalf("%s acked %d %q, %v; want 200 and the empty reply", i.name, status, answer, err)
	}
}

// backend is the bot behind the gateway: it answers "re:<msgId>" as
// plain text, once its hold (if any) is released and its delay for the
// message (if any) passed.
type backend struct {
	*dingtalktest.Recorder
	mu    sync.Mutex
	hold  chan struct{} // calls wait until it is closed (or their client goes away)
	delay map[string]time.Duration
}

func newBackend(t *testing.T) *backend {
	b := &backend{Recorder: dingtalktest.NewRecorder(), delay: map[string]time.Duration{}}
	t.Cleanup(b.Close)
	b.Handler = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := dingtalk.ParseMessage(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		hold, delay := b.hold, b.delay[m.MsgID]
		b.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "re:"+m.MsgID)
	}
	return b
}

// holdCalls makes calls wait until the returned function is called.
func (b *backend) holdCalls() (release func()) {
	hold := make(chan struct{})
	b.mu.Lock()
	b.hold = hold
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.hold = nil
			b.mu.Unlock()
			close(hold)
		})
	}
}

// slow makes the calls for msgID take d.
func (b *backend) slow(msgID string, d time.Duration) {
	b.mu.Lock()
	b.delay[msgID] = d
	b.mu.Unlock()
}

// calls counts the calls the backend got for msgID.
func (b *backend) calls(msgID string) int {
	n := 0
	for _, r := range b.Requests() {
		if m, err := dingtalk.ParseMessage(r.Body); err == nil && m.MsgID == msgID {
			n++
		}
	}
	return n
}

// webhook is the fake sessionWebhook the answers are posted to.
type webhook struct{ *dingtalktest.Recorder }

func newWebhook(t *testing.T) webhook {
	w := webhook{dingtalktest.NewWebhook()}
	t.Cleanup(w.Close)
	return w
}

// host is the webhook's host:port, for webhook_hosts.
func (w webhook) host() string { return strings.TrimPrefix(w.URL, "http://") }

// posts counts the texts posted to the webhook that say text.
func (w webhook) posts(text string) int {
	n := 0
	for _, r := range w.Requests() {
		var m struct{ Text struct{ Content string } }
		if json.Unmarshal(r.Body, &m) == nil && m.Text.Content == text {
			n++
		}
	}
	return n
}

// callback is a text message whose sessionWebhook is on w.
func (w webhook) callback(msgID string) []byte {
	return dingtalktest.Callback{Text: "hello", MsgID: msgID, SessionWebhook: w.SessionURL()}.Body()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// background is a context for the tests' Redis inspections.
var background = context.Background()
