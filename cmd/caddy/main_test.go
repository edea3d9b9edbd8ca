package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// runMainEnv makes the test binary run Caddy's main instead of the tests:
// caddycmd.Main reads os.Args and exits, so the real root command (with
// every registered subcommand) only runs as a process of its own. The test
// binary is this package's main compiled, so nothing needs building.
const runMainEnv = "CADDY_DINGTALK_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// caddy runs `caddy args...` and returns what it printed and its exit status.
func caddy(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir,
		"CADDY_DINGTALK_TEST_SECRET=this is a secret")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

func TestHelpListsTheDingtalkCommand(t *testing.T) {
	stdout, stderr, status := caddy(t, "help")
	if status != 0 || !regexp.MustCompile(`(?m)^  dingtalk +Signs and sends DingTalk robot callbacks`).MatchString(stdout) {
		t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
}

func TestDingtalkSignRunsFromTheCaddyCommand(t *testing.T) {
	stdout, stderr, status := caddy(t, "dingtalk", "sign", "--secret-env", "CADDY_DINGTALK_TEST_SECRET", "--timestamp", "1577262236757")
	if want := "timestamp: 1577262236757\nsign: DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA=\n"; status != 0 || stdout != want {
		t.Errorf("exit %d, stdout %q, want %q; stderr:\n%s", status, stdout, want, stderr)
	}
}

func TestDingtalkFailuresExitNonZero(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dingtalk", "send", "--url", "http://127.0.0.1:8080/robot"},
			"Error: no secret: give the robot's AppSecret with --secret-env NAME (keeps it out of shell history) or --secret\n"},
		{[]string{"dingtalk", "sned"}, "Error: unknown command \"sned\" for \"caddy dingtalk\"\n"},
	} {
		stdout, stderr, status := caddy(t, tc.args...)
		if status != 1 || stdout != "" || stderr != tc.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 1, nothing, %q", tc.args, status, stdout, stderr, tc.want)
		}
	}
}
