//go:build unix

package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bin holds the programs TestMain builds once: Caddy with the caddy-dingtalk
// modules, and the examples' Go servers.
var bin struct {
	caddy, goBackend, upstream string
	// sources are the repository's folders of the programs' packages (the
	// root's holds go.mod and go.sum).
	sources []string
}

// programs are the packages TestMain builds.
var programs = []string{"./cmd/caddy", "./examples/go", "./examples/routing/upstream"}

// readyWait bounds how long a program may take to start listening: generous,
// so that a loaded machine does not fail the test.
const readyWait = 60 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-dingtalk-examples-")
	if err != nil {
		panic(err)
	}
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the programs into dir, from the repository's root, as
// the READMEs' `go run` commands would, and lists their sources.
func build(dir string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, programs...)...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	bin.caddy = filepath.Join(dir, "caddy")
	bin.goBackend = filepath.Join(dir, "go")
	bin.upstream = filepath.Join(dir, "upstream")

	cmd = exec.Command("go", append([]string{"list", "-deps", "-f", "{{.Dir}}"}, programs...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == root || strings.HasPrefix(pkg, root+string(filepath.Separator)) {
			bin.sources = append(bin.sources, pkg)
		}
	}
	return nil
}

// watch lists the example's folders and the programs' sources. go test
// caches a test's result until the Go packages it imports change, or the
// files and folders it opened (a folder by the names, sizes and times of
// its entries); this test runs its inputs in other processes, so it opens
// them itself: a changed Caddyfile, backend or module source runs it again.
func watch(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(_ string, _ fs.DirEntry, err error) error { return err })
	for _, pkg := range bin.sources {
		if err == nil {
			_, err = os.ReadDir(pkg)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// needs skips the test when program is not installed, except on CI, where
// every example must run.
func needs(t *testing.T, program string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed, and CI must run every example (.ci/run installs it)", program)
		}
		t.Skipf("%s is not installed: this example is not run (CI runs it)", program)
	}
}

// exampleVars are the environment variables the examples read; a test
// sets the ones it means, never inherits them.
var exampleVars = []string{"LISTEN", "BACKEND_ADDR", "WEBHOOK_HOST", "WEATHER_ADDR", "ASK_ADDR", "DELAY_SECONDS", "INSTANCE", "REDIS_ADDR",
	"API_BASE", "WORD_SECONDS", "DINGTALK_APP_KEY", "MEDIA_ADDR", "NOTIFY_PASSWORD", "NOTIFY_PASSWORD_HASH",
	"CADDY_ADMIN", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "STREAM_LEASE", "STREAM_ADDR", "EVENTS_LOG"}

// example is one example running: its programs, on free loopback ports,
// with their addresses and secrets in the environment, as a user would
// set them for the README's commands.
type example struct {
	t      *testing.T
	dir    string   // its folder in examples/
	env    []string // every program's environment
	listen string   // Caddy's address
}

// newExample prepares the environment of the example in folder dir: Caddy
// on a free port, its admin endpoint on another, its storage in a
// temporary folder.
func newExample(t *testing.T, dir string) *example {
	watch(t, dir)
	ex := &example{t: t, dir: dir}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "DINGTALK_") && !slices.Contains(exampleVars, name) {
			ex.env = append(ex.env, kv)
		}
	}
	ex.listen = ex.addr("LISTEN")
	ex.addr("CADDY_ADMIN")
	storage := t.TempDir()
	ex.set("XDG_CONFIG_HOME", filepath.Join(storage, "config"))
	ex.set("XDG_DATA_HOME", filepath.Join(storage, "data"))
	return ex
}

// set sets an environment variable for the example's programs.
func (ex *example) set(name, value string) {
	ex.env = append(ex.env, name+"="+value)
}

// addr picks a free loopback address and sets the variable name to it.
func (ex *example) addr(name string) string {
	ex.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ex.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ex.set(name, addr)
	return addr
}

// process is a program an example runs.
type process struct {
	pid    int             // also its process group's id
	done   <-chan struct{} // closed once it exited
	output func() string   // what it printed so far, stdout and stderr
}

// start runs argv from the repository's root, as the READMEs do, in its
// own process group, and waits until it listens on addr. The program is
// stopped when the test ends; its output is shown when the test failed.
func (ex *example) start(addr string, argv ...string) *process {
	t := ex.t
	t.Helper()
	name := strings.Join(argv, " ")
	logFile, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = ".."
	cmd.Env = ex.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A group of its own: stopping it stops whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	output := func() string {
		out, _ := os.ReadFile(logFile.Name())
		return string(out)
	}
	t.Cleanup(func() {
		stop(cmd.Process.Pid, done)
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, output())
		}
	})

	deadline := time.Now().Add(readyWait)
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return &process{pid: cmd.Process.Pid, done: done, output: output}
		}
		select {
		case <-done:
			t.Fatalf("%s exited before listening on %s:\n%s", name, addr, output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s after %s", name, addr, readyWait)
		}
	}
}

// stop ends the process group pgid: politely, then for sure.
func stop(pgid int, done <-chan struct{}) {
	select {
	case <-done:
		return // its group id may belong to someone else by now
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
}

// caddy runs `caddy run --config examples/<dir>/Caddyfile` and waits
// until it serves.
func (ex *example) caddy() *process {
	ex.t.Helper()
	return ex.start(ex.listen, bin.caddy, "run", "--config", "examples/"+ex.dir+"/Caddyfile")
}

// send runs `caddy dingtalk send --url <the example's /robot> args...`.
func (ex *example) send(args ...string) (stdout, stderr string, err error) {
	return ex.command("send", "/robot", args...)
}

// command runs `caddy dingtalk <sub> --url <the example's path> args...`.
func (ex *example) command(sub, path string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.caddy, append([]string{"dingtalk", sub, "--url", "http://" + ex.listen + path}, args...)...)
	cmd.Env = ex.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// expect sends with args and checks what `caddy dingtalk send` printed.
func (ex *example) expect(want string, args ...string) {
	ex.t.Helper()
	stdout, stderr, err := ex.send(args...)
	if err != nil || stdout != want {
		ex.t.Errorf("caddy dingtalk send %q: %v\nprinted:\n%s\nwant:\n%s\nstderr:\n%s", args, err, stdout, want, stderr)
	}
}

// expectRejected sends with args and checks that the gateway refused the
// callback with status.
func (ex *example) expectRejected(status string, args ...string) {
	ex.t.Helper()
	stdout, stderr, err := ex.send(args...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || stdout != status+"\n(empty body)\n" {
		ex.t.Errorf("caddy dingtalk send %q: %v\nprinted:\n%s\nwant %s\nstderr:\n%s", args, err, stdout, status, stderr)
	}
}

// printed is what `caddy dingtalk send` prints for a 200 answer with reply
// and, with --webhook-listen, the sessionWebhook posts: JSON indented.
func printed(t *testing.T, reply string, posts ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("200 OK\n")
	for i, body := range append([]string{reply}, posts...) {
		if i > 0 {
			fmt.Fprintf(&b, "sessionWebhook post %d:\n", i)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, []byte(body), "", "  "); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		b.WriteString(out.String() + "\n")
	}
	return b.String()
}

// bodyFile writes body to a file for `caddy dingtalk send --body`.
func bodyFile(t *testing.T, body []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "callback.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
