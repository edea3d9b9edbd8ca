package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// respondSite answers genuine callbacks itself, like the root Caddyfile.
var respondSite = site{FilterSign: true, Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
		}
		header Content-Type "application/json; charset=utf-8"
		respond `+"`"+`{"msgtype":"text","text":{"content":"received {http.dingtalk.text}"}}`+"`"+` 200
	}`, testSecret)}

// cliSecretEnv holds the secret for --secret-env, as users are told to do.
const cliSecretEnv = "CADDY_DINGTALK_CLI_SECRET"

// runCLI runs `caddy dingtalk args...` in this process through the command
// the module registered with Caddy, with cobra's own flag parsing and error
// printing, and returns what it printed.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv(cliSecretEnv, testSecret)
	def, ok := caddycmd.Commands()["dingtalk"]
	if !ok {
		t.Fatal("no dingtalk command is registered")
	}
	cmd := &cobra.Command{Use: def.Name + " " + def.Usage, Short: def.Short, Long: def.Long}
	def.CobraFunc(cmd)
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	if strings.Contains(out.String()+errOut.String(), testSecret) {
		t.Errorf("the secret was printed:\n%s\n%s", out.String(), errOut.String())
	}
	return out.String(), errOut.String(), err
}

var sendingLine = regexp.MustCompile(`^sending a (one-to-one|group) text callback, msgId (msg\S+), to (\S+)\n`)

func TestCLISendGetsTheGatewaysReply(t *testing.T) {
	g := startGateway(t, respondSite)

	stdout, stderr, err := runCLI(t, "send", "--url", g.URL+"/robot", "--secret-env", cliSecretEnv, "--text", "hello", "--group")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if want := "200 OK\n{\n  \"msgtype\": \"text\",\n  \"text\": {\n    \"content\": \"received hello\"\n  }\n}\n"; stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
	if m := sendingLine.FindStringSubmatch(stderr); m == nil || m[1] != "group" || m[3] != g.URL+"/robot" || stderr != m[0] {
		t.Errorf("stderr %q", stderr)
	}
}

func TestCLISendShowsDeduplication(t *testing.T) {
	g := startGateway(t, respondSite)
	args := []string{"send", "--url", g.URL + "/robot", "--secret-env", cliSecretEnv, "--text", "twice", "--msg-id", dingtalktest.NewMsgID()}

	if stdout, _, err := runCLI(t, args...); err != nil || !strings.Contains(stdout, `"content": "received twice"`) {
		t.Fatalf("first send: %v\n%s", err, stdout)
	}
	stdout, _, err := runCLI(t, args...)
	if err != nil || stdout != "200 OK\n{\n  \"msgtype\": \"empty\"\n}\n" {
		t.Errorf("redelivery: %v\n%s\nwant the empty reply", err, stdout)
	}
}

func TestCLISendReachesTheUpstreamWithEveryField(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, proxySite(upstream, ""))

	stdout, stderr, err := runCLI(t, "send", "--url", g.URL+"/robot", "--secret-env", cliSecretEnv,
		"--text", "hi there", "--sender-nick", "Li Si", "--sender-staff-id", "staff42", "--robot-code", "dingbot9")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if stdout != "200 OK\n{\n  \"msgtype\": \"empty\"\n}\n" {
		t.Errorf("stdout %q, want the upstream's reply", stdout)
	}
	got := upstream.Requests()
	if len(got) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(got))
	}
	m, err := dingtalk.ParseMessage(got[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	sent := sendingLine.FindStringSubmatch(stderr)
	if sent == nil || m.MsgID != sent[2] || m.TrimmedText() != "hi there" || m.Conversation() != dingtalk.ConversationSingle ||
		m.SenderNick != "Li Si" || m.SenderStaffID != "staff42" || m.RobotCode != "dingbot9" || m.SessionWebhook == "" || m.CreateAt == 0 {
		t.Errorf("upstream got %s\nafter %q", got[0].Body, stderr)
	}
}

func TestCLISendExplainsARejection(t *testing.T) {
	g := startGateway(t, respondSite)
	t.Setenv("CADDY_DINGTALK_OTHER_SECRET", "not the gateway's secret")

	stdout, stderr, err := runCLI(t, "send", "--url", g.URL+"/robot", "--secret-env", "CADDY_DINGTALK_OTHER_SECRET")
	const want = "the gateway answered 401 Unauthorized (timestamp or sign refused: is the secret the gateway's, and this machine's clock right? Caddy's log names the reason)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if stdout != "401 Unauthorized\n(empty body)\n" || !strings.HasSuffix(stderr, "Error: "+want+"\n") {
		t.Errorf("stdout %q\nstderr %q", stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "not the gateway's secret") {
		t.Error("the secret was printed")
	}
	if logs := g.logs(); !strings.Contains(logs, `"reason":"bad_sign"`) {
		t.Errorf("the gateway did not log the reason the CLI points to:\n%s", logs)
	}
}

func TestCLISendBodyFileWithoutMsgID(t *testing.T) {
	g := startGateway(t, respondSite)
	file := filepath.Join(t.TempDir(), "callback.json")
	if err := os.WriteFile(file, []byte(`{"msgtype":"text","text":{"content":"no id"}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, err := runCLI(t, "send", "--url", g.URL+"/robot", "--secret-env", cliSecretEnv, "--body", file)
	if err == nil || !strings.HasPrefix(err.Error(), "the gateway answered 400 Bad Request") {
		t.Errorf("err = %v, want the gateway's 400", err)
	}
	if stdout != "400 Bad Request\n(empty body)\n" || !strings.Contains(stderr, "note: the gateway will refuse "+file+": invalid callback body: no msgId\n") {
		t.Errorf("stdout %q\nstderr %q", stdout, stderr)
	}
}

func TestCLISignMatchesWhatTheGatewayAccepts(t *testing.T) {
	g := startGateway(t, respondSite)
	stdout, _, err := runCLI(t, "sign", "--secret-env", cliSecretEnv, "--url", g.URL+"/robot")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(stdout, "\n")
	ts, _ := strings.CutPrefix(lines[0], "timestamp: ")
	sig, _ := strings.CutPrefix(lines[1], "sign: ")

	req, err := dingtalktest.NewRequest(g.URL+"/robot", "unused", callback("signed by the CLI"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(dingtalk.HeaderTimestamp, ts)
	req.Header.Set(dingtalk.HeaderSign, sig)
	if resp := g.do(req); resp.Status != 200 || !strings.Contains(resp.Body, "received signed by the CLI") {
		t.Errorf("gateway answered %d %s to the CLI's headers", resp.Status, resp.Body)
	}
}

func TestCLIRefusesAMissingSecret(t *testing.T) {
	t.Setenv("CADDY_DINGTALK_EMPTY", "")
	for args, want := range map[string]string{
		"sign":                                   "no secret: give the robot's AppSecret with --secret-env NAME (keeps it out of shell history) or --secret",
		"send --url http://127.0.0.1:1/robot":    "no secret: give the robot's AppSecret with --secret-env NAME (keeps it out of shell history) or --secret",
		"sign --secret-env CADDY_DINGTALK_EMPTY": "--secret-env: environment variable CADDY_DINGTALK_EMPTY is empty",
	} {
		stdout, stderr, err := runCLI(t, strings.Fields(args)...)
		if err == nil || err.Error() != want || stdout != "" || stderr != "Error: "+want+"\n" {
			t.Errorf("%s: err %v\nstdout %q\nstderr %q\nwant %s", args, err, stdout, stderr, want)
		}
	}
}
