package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The protocol notes' test vectors.
const vectorTimestamp = "1577262236757"

// testSecret is the secret of the tests' fake gateways.
const testSecret = "this is a secret"

var signVectors = []struct{ secret, sign string }{
	{"this is a secret", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="},
	{"testAppSecret123", "/u/NmL78bEwbWCrXKtyloL0DktNIZ2Q7oKeLE4xd5wU="},
}

// sign runs `caddy dingtalk sign` and fails the test if secret shows up in
// anything it printed or returned.
func sign(t *testing.T, opts signOptions, secret string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runSign(opts, &out, &errOut)
	assertNoSecret(t, secret, out.String(), errOut.String(), err)
	return out.String(), errOut.String(), err
}

// assertNoSecret fails when secret appears in any output or in err.
func assertNoSecret(t *testing.T, secret, stdout, stderr string, err error) {
	t.Helper()
	if strings.Contains(stdout, secret) || strings.Contains(stderr, secret) || (err != nil && strings.Contains(err.Error(), secret)) {
		t.Errorf("the secret was printed:\nstdout: %s\nstderr: %s\nerr: %v", stdout, stderr, err)
	}
}

// signedHeaders reads the two header lines that start sign's output.
func signedHeaders(t *testing.T, stdout string) (ts, sig string) {
	t.Helper()
	lines := strings.SplitN(stdout, "\n", 3)
	ts, ok1 := strings.CutPrefix(lines[0], "timestamp: ")
	sig, ok2 := strings.CutPrefix(lines[1], "sign: ")
	if len(lines) < 3 || !ok1 || !ok2 {
		t.Fatalf("stdout does not start with the timestamp and sign lines:\n%s", stdout)
	}
	return ts, sig
}

func TestSignPrintsTheProtocolVectors(t *testing.T) {
	for _, v := range signVectors {
		stdout, stderr, err := sign(t, signOptions{Secret: secretSource{Value: v.secret}, Timestamp: vectorTimestamp}, v.secret)
		if err != nil {
			t.Fatal(err)
		}
		if want := "timestamp: " + vectorTimestamp + "\nsign: " + v.sign + "\n"; stdout != want {
			t.Errorf("secret %q: stdout\n%s\nwant\n%s", v.secret, stdout, want)
		}
		if want := "note: timestamp 1577262236757 is more than 1h old: a gateway with the default max_age rejects it\n"; stderr != want {
			t.Errorf("stderr %q, want %q", stderr, want)
		}
	}
}

func TestSignReadsTheSecretFromTheEnvironment(t *testing.T) {
	v := signVectors[1]
	t.Setenv("CADDY_DINGTALK_TEST_SECRET", v.secret)
	stdout, _, err := sign(t, signOptions{Secret: secretSource{Env: "CADDY_DINGTALK_TEST_SECRET"}, Timestamp: vectorTimestamp}, v.secret)
	if err != nil {
		t.Fatal(err)
	}
	if want := "timestamp: " + vectorTimestamp + "\nsign: " + v.sign + "\n"; stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
}

func TestSignDefaultsToNow(t *testing.T) {
	before := time.Now().UnixMilli()
	stdout, stderr, err := sign(t, signOptions{Secret: secretSource{Value: testSecret}}, testSecret)
	after := time.Now().UnixMilli()
	if err != nil || stderr != "" {
		t.Fatalf("err %v, stderr %q", err, stderr)
	}
	ts, sig := signedHeaders(t, stdout)
	if ms, _ := strconv.ParseInt(ts, 10, 64); ms < before || ms > after {
		t.Errorf("timestamp %s is not between %d and %d", ts, before, after)
	}
	if !dingtalk.SignMatches(testSecret, ts, sig) {
		t.Errorf("sign %q does not match timestamp %s", sig, ts)
	}
}

func TestSignWarnsOfATimestampAhead(t *testing.T) {
	ahead := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	_, stderr, err := sign(t, signOptions{Secret: secretSource{Value: testSecret}, Timestamp: ahead}, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if want := "note: timestamp " + ahead + " is more than 5m ahead: a gateway with the default max_future rejects it\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

// The curl command is run as printed, by a shell, against a real server.
func TestSignCurlCommandPostsASignedBody(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed, and CI must run this test (.ci/run installs it)")
		}
		t.Skip("curl is not installed (CI runs this test)")
	}
	rec := dingtalktest.NewRecorder()
	defer rec.Close()
	target := rec.URL + "/robot/it's" // a quote the shell quoting must survive

	stdout, stderr, err := sign(t, signOptions{Secret: secretSource{Value: testSecret}, URL: target}, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	ts, sig := signedHeaders(t, stdout)
	wantCurl := "\ncurl -sS '" + rec.URL + `/robot/it'\''s' \
  -H 'Content-Type: application/json; charset=utf-8' \
  -H 'timestamp: ` + ts + `' \
  -H 'sign: ` + sig + `' \
  --data-binary @body.json
`
	if _, rest, _ := strings.Cut(stdout, sig+"\n"); rest != wantCurl {
		t.Errorf("curl command\n%s\nwant\n%s", rest, wantCurl)
	}
	if want := "body.json: the callback's JSON; @- reads it from stdin instead\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}

	dir := t.TempDir()
	body := dingtalktest.Callback{Text: "curl"}.Body()
	if err := os.WriteFile(filepath.Join(dir, "body.json"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", stdout)
	sh.Dir = dir
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("running the printed command: %v\n%s", err, out)
	}
	got := rec.Requests()
	if len(got) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(got))
	}
	r := got[0]
	if r.Method != "POST" || r.Path != "/robot/it's" || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("server saw %s %s with Content-Type %q", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	if !dingtalk.SignMatches(testSecret, r.Header.Get("timestamp"), r.Header.Get("sign")) {
		t.Errorf("server saw timestamp %q sign %q: no match", r.Header.Get("timestamp"), r.Header.Get("sign"))
	}
	if !bytes.Equal(r.Body, body) {
		t.Errorf("server saw body %s, want %s", r.Body, body)
	}
}

func TestSignErrors(t *testing.T) {
	t.Setenv("CADDY_DINGTALK_EMPTY", "")
	tests := map[string]struct {
		opts signOptions
		want string
	}{
		"no secret": {
			opts: signOptions{},
			want: "no secret: give the robot's AppSecret with --secret-env NAME (keeps it out of shell history) or --secret",
		},
		"both secrets": {
			opts: signOptions{Secret: secretSource{Value: testSecret, Env: "HOME"}},
			want: "give either --secret or --secret-env, not both",
		},
		"unset variable": {
			opts: signOptions{Secret: secretSource{Env: "CADDY_DINGTALK_NOT_SET"}},
			want: "--secret-env: environment variable CADDY_DINGTALK_NOT_SET is not set",
		},
		"empty variable": {
			opts: signOptions{Secret: secretSource{Env: "CADDY_DINGTALK_EMPTY"}},
			want: "--secret-env: environment variable CADDY_DINGTALK_EMPTY is empty",
		},
		"seconds timestamp with a sign": {
			opts: signOptions{Secret: secretSource{Value: testSecret}, Timestamp: "+1577262236"},
			want: `--timestamp "+1577262236" is not a decimal count of milliseconds since the epoch, like 1577262236757`,
		},
		"relative url": {
			opts: signOptions{Secret: secretSource{Value: testSecret}, URL: "localhost:8080/robot"},
			want: `--url "localhost:8080/robot" is not an absolute http(s) URL, like http://localhost:8080/robot`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := sign(t, tc.opts, testSecret)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant %s", err, tc.want)
			}
			if stdout != "" || stderr != "" {
				t.Errorf("printed %q %q before failing", stdout, stderr)
			}
		})
	}
}
