package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// buildCaddy builds ./cmd/caddy of the module the harness runs in into dir.
func buildCaddy(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("run the harness inside the caddy-dingtalk module (go env GOMOD: %v)", err)
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy: %v", err)
	}
	return bin, nil
}

// caddyVersion is what `caddy version` prints.
func caddyVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

// caddyProc is one Caddy subprocess serving one site on a loopback port.
type caddyProc struct {
	Addr   string // the site's host:port
	Admin  string // the admin endpoint's host:port, or "" when it is off
	Log    string // Caddy's stdout and stderr, and its WARN+ log
	cmd    *exec.Cmd
	exited chan struct{}
}

// Pid is the Caddy process's id (taskset execs Caddy in its own process).
func (c *caddyProc) Pid() int { return c.cmd.Process.Pid }

// startCaddy writes a Caddyfile for site into dir and runs it on a free
// loopback port, with Caddy's storage in dir and only warnings and errors
// logged. The admin endpoint is off, or on a free loopback port with admin
// set, for profiling. cpus, when set, pins Caddy to those CPUs with taskset.
// It returns once the site accepts connections.
func startCaddy(bin, dir, name, site, cpus string, admin bool) (*caddyProc, error) {
	return startCaddyWith(bin, dir, name, "", site, cpus, admin)
}

// startCaddyWith is startCaddy with further global options, in which
// SITE_ADDR stands for the site's host:port.
func startCaddyWith(bin, dir, name, global, site, cpus string, admin bool) (*caddyProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &caddyProc{Addr: "127.0.0.1:" + port, Log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	adminOption := "admin off"
	if admin {
		if port, err = freePort(); err != nil {
			return nil, err
		}
		c.Admin = "127.0.0.1:" + port
		adminOption = "admin " + c.Admin
	}
	caddyfile := filepath.Join(dir, name+".Caddyfile")
	config := fmt.Sprintf(`{
	%s
	persist_config off
	log {
		output file %q
		level WARN
	}
	%s
}

http://%s {
%s
}
`, adminOption, c.Log, strings.ReplaceAll(global, "SITE_ADDR", c.Addr), c.Addr, site)
	if err := os.WriteFile(caddyfile, []byte(config), 0o600); err != nil {
		return nil, err
	}
	out, err := os.Create(c.Log + ".out")
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy

	args := []string{bin, "run", "--config", caddyfile, "--adapter", "caddyfile"}
	if cpus != "" {
		args = append([]string{"taskset", "--cpu-list", cpus}, args...)
	}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"))
	c.cmd.Stdout, c.cmd.Stderr = out, out
	// Caddy dies with the harness, whatever ends it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", c.Addr, time.Second)
		if err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("caddy for %s exited at start; see %s.out", name, c.Log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("caddy for %s is not listening on %s after 30s; see %s.out", name, c.Addr, c.Log)
		}
	}
}

// Stop asks Caddy to exit and kills it if it has not after a few seconds.
func (c *caddyProc) Stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return "", errors.New("no port in " + ln.Addr().String())
	}
	return port, nil
}
