package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// jsonKeys returns the sorted keys of a JSON object.
func jsonKeys(t *testing.T, object []byte) []string {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(object, &fields); err != nil {
		t.Fatalf("%s: %v", object, err)
	}
	return slices.Sorted(maps.Keys(fields))
}

// --msgtype builds the bodies DingTalk sends: the fields and content of the
// protocol notes' samples, the given download code, --text where the type
// carries text.
func TestSendMsgTypesAreShapedAsDingTalkSendsThem(t *testing.T) {
	samples := map[string]string{
		dingtalk.MsgTypePicture: "picture.json", dingtalk.MsgTypeRichText: "rich_text.json", dingtalk.MsgTypeFile: "file.json",
		dingtalk.MsgTypeAudio: "audio.json", dingtalk.MsgTypeVideo: "video.json",
	}
	for msgType, sample := range samples {
		t.Run(msgType, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("..", "dingtalk", "testdata", "callbacks", sample))
			if err != nil {
				t.Fatal(err)
			}
			gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`))
			cb := dingtalktest.Callback{MsgType: msgType, DownloadCode: "dcGiven==", Group: true}
			if carriesText(msgType) {
				cb.Text = "see this"
			}
			if _, stderr, err := send(t, sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, Callback: cb, Admin: true}); err != nil {
				t.Fatal(err)
			} else if !strings.HasPrefix(stderr, "sending a group "+msgType+" callback") {
				t.Errorf("stderr %q", stderr)
			}
			got := gw.Requests()[0].Body
			m, err := dingtalk.ParseMessage(got)
			if err != nil {
				t.Fatal(err)
			}
			sampleMsg, err := dingtalk.ParseMessage(want)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := jsonKeys(t, got), jsonKeys(t, want); !slices.Equal(g, w) {
				t.Errorf("fields %v, the sample's %v", g, w)
			}
			if g, w := jsonKeys(t, m.Content), jsonKeys(t, sampleMsg.Content); !slices.Equal(g, w) {
				t.Errorf("content %s has the fields %v, the sample's %v", m.Content, g, w)
			}
			if m.MsgType != msgType || !bytes.Contains(m.Content, []byte(`"downloadCode":"dcGiven=="`)) {
				t.Errorf("body %s is not a %s with the given downloadCode", got, msgType)
			}
			if carriesText(msgType) && !bytes.Contains(m.Content, []byte(`"see this"`)) {
				t.Errorf("content %s lacks the text", m.Content)
			}
		})
	}
}

// Field flags given as ” leave the field out; --admin is off by default.
func TestSendFieldsCanBeLeftOut(t *testing.T) {
	for _, admin := range []bool{false, true} {
		gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`))
		_, _, err := send(t, sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret},
			Cleared: []string{"sender-staff-id", "robot-code"}, Admin: admin})
		if err != nil {
			t.Fatal(err)
		}
		body := gw.Requests()[0].Body
		keys := jsonKeys(t, body)
		if slices.Contains(keys, "senderStaffId") || slices.Contains(keys, "robotCode") || !slices.Contains(keys, "senderNick") {
			t.Errorf("fields %v: senderStaffId and robotCode must be left out, nothing else", keys)
		}
		if m, _ := dingtalk.ParseMessage(body); m == nil || m.IsAdmin != admin {
			t.Errorf("--admin %v sent %s", admin, body)
		}
	}
}

// The cobra flags: ” given is told from a flag left alone.
func TestSendFlagsGivenEmpty(t *testing.T) {
	run := func(args ...string) string {
		cmd := sendCommand()
		var out, errOut bytes.Buffer
		cmd.SetArgs(append([]string{"--url", "http://127.0.0.1:1/robot", "--secret", testSecret, "--dry-run"}, args...))
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		_, body, _ := strings.Cut(out.String(), "\n\n")
		return strings.TrimSpace(body)
	}
	if keys := jsonKeys(t, []byte(run("--sender-staff-id", ""))); slices.Contains(keys, "senderStaffId") {
		t.Errorf("--sender-staff-id '' sent %v", keys)
	}
	if body := run(); !strings.Contains(body, `"senderStaffId":"user123"`) || !strings.Contains(body, `"isAdmin":false`) {
		t.Errorf("the default callback is %s", body)
	}
	if body := run("--admin", "--msgtype", "picture"); !strings.Contains(body, `"isAdmin":true`) || !strings.Contains(body, `"msgtype":"picture"`) {
		t.Errorf("--admin --msgtype picture sent %s", body)
	}
}

// --dry-run prints the signed request and sends nothing; --print-body
// prints what it then sends.
func TestSendPrintsTheSignedRequest(t *testing.T) {
	gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`))
	opts := sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, Callback: dingtalktest.Callback{MsgID: "msgPrinted"}}
	for _, dryRun := range []bool{true, false} {
		opts.DryRun, opts.PrintRequest = dryRun, !dryRun
		stdout, _, err := send(t, opts)
		if err != nil {
			t.Fatal(err)
		}
		head, rest, _ := strings.Cut(stdout, "\n\n")
		body, answer, _ := strings.Cut(rest, "\n\n")
		lines := strings.Split(head, "\n")
		if lines[0] != "POST /robot HTTP/1.1" || lines[1] != "Host: "+strings.TrimPrefix(gw.URL, "http://") {
			t.Fatalf("request line and host: %q", lines[:2])
		}
		header := http.Header{}
		for _, line := range lines[2:] {
			name, value, _ := strings.Cut(line, ": ")
			header.Add(name, value)
		}
		if !dingtalk.SignMatches(testSecret, header.Get("Timestamp"), header.Get("Sign")) || header.Get("Content-Type") != jsonType {
			t.Errorf("printed headers %v are not signed", header)
		}
		if m, err := dingtalk.ParseMessage([]byte(body)); err != nil || m.MsgID != "msgPrinted" {
			t.Errorf("printed body %q: %v", body, err)
		}
		sent := gw.Requests()
		switch {
		case dryRun && (len(sent) != 0 || answer != ""):
			t.Fatalf("--dry-run sent %d requests and printed %q", len(sent), answer)
		case !dryRun && (len(sent) != 1 || string(sent[0].Body) != body || !strings.HasPrefix(answer, "200 OK\n")):
			t.Fatalf("--print-body printed %q, sent %d requests, then printed %q", body, len(sent), answer)
		}
	}
}

// Backends such as chatgpt-dingtalk answer DingTalk 200 with an empty body
// and post their reply to the sessionWebhook themselves: --webhook-listen
// waits for that post.
func TestSendWaitsForPostsAfterAnEmptyAnswer(t *testing.T) {
	gw := newGateway(t, testSecret, nil)
	gw.Handler = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := dingtalk.ParseMessage(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK) // empty, as chatgpt-dingtalk answers
		go func() {
			resp, err := http.Post(m.SessionWebhook, jsonType, strings.NewReader(`{"msgtype":"markdown","markdown":{"title":"GPT","text":"an answer"}}`))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	stdout, stderr, err := send(t, sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, WebhookListen: "127.0.0.1:0", Wait: time.Minute})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "200 OK\n(empty body)\nsessionWebhook post 1:\n") || !strings.Contains(stdout, `"text": "an answer"`) {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(stderr, "note: the answer is empty, as from a backend that posts its reply to the sessionWebhook itself") {
		t.Errorf("stderr %q", stderr)
	}
}

// A timestamp of 10 digits is named as seconds, by send and by sign.
func TestTimestampInSecondsIsNamed(t *testing.T) {
	const seconds = "1577262236"
	want := "note: timestamp 1577262236 has 10 digits, like seconds since the epoch: DingTalk's are milliseconds (13 digits), and a gateway rejects it as expired\n"
	_, stderr, err := sign(t, signOptions{Secret: secretSource{Value: testSecret}, Timestamp: seconds}, testSecret)
	if err != nil || stderr != want {
		t.Errorf("sign: stderr %q, err %v\nwant %q", stderr, err, want)
	}
	_, stderr, _ = send(t, sendOptions{URL: "http://127.0.0.1:1/robot", Secret: secretSource{Value: testSecret}, Timestamp: seconds, DryRun: true})
	if !strings.HasPrefix(stderr, want) {
		t.Errorf("send: stderr %q\nwant %q", stderr, want)
	}
}
