// Package redistest runs a real redis-server on loopback for tests.
//
// The server binary is looked up on PATH. Where it is missing the test is
// skipped, except in CI (the CI environment variable is set), where a test
// that needs Redis must not pass by skipping: there it fails.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a starting server may take to answer PING;
// generous, for a loaded machine.
const startTimeout = 15 * time.Second

// Server is a redis-server process listening on 127.0.0.1, with no
// persistence: a restart comes back empty.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1. It stays the same across Restart.
	Addr string

	t      testing.TB // nil for a server from Run
	binary string
	args   []string
	dir    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs redis-server on a free loopback port with the given extra
// arguments (such as "--requirepass", "pw"), waits until it answers PING, and
// stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not on PATH, and CI must run the Redis tests: %v", err)
		}
		t.Skipf("redis-server is not on PATH (install Debian's redis-server to run this test): %v", err)
	}
	s, err := run(binary, t.TempDir(), args)
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// Run is Start for a program rather than a test (the load harness in
// bench/): the server keeps its files in dir, the caller stops it, and it
// cannot Restart. It fails when redis-server is not on PATH.
func Run(dir string, args ...string) (*Server, error) {
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	return run(binary, dir, args)
}

// run starts a server on a free port. The port was free a moment ago; if
// another process took it since, redis-server exits at once and a new port
// is tried.
func run(binary, dir string, args []string) (*Server, error) {
	s := &Server{binary: binary, args: args, dir: dir}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", port)
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// Stop ends the server and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(startTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Pid is the server's process id, 0 when it is stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Restart stops the server and starts a new, empty one on the same address
// (servers from Start only).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
	}
}

// start runs redis-server on s.Addr and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	}, s.args...)
	cmd := exec.Command(s.binary, args...)
	output := &bytes.Buffer{}
	cmd.Stdout = output
	cmd.Stderr = output
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		if ping(s.Addr) {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", output.Bytes())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer PING within %v: %s", startTimeout, output.Bytes())
		}
	}
}

// ping reports whether a Redis server at addr answers PING. A server that
// requires a password answers with a NOAUTH error, which also shows it is up.
func ping(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && (line == "+PONG\r\n" || bytes.HasPrefix([]byte(line), []byte("-NOAUTH")))
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}
