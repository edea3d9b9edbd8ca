package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// logEntry is a line of the module's log, with the fields tests look at.
type logEntry struct {
	Level, Logger, Msg string
	Bot                string
	MsgID              string `json:"msg_id"`
	MsgType            string `json:"msgtype"`
	Conversation       string
	SenderStaffID      string  `json:"sender_staff_id"`
	Text               *string // only with log_text
	Reason             string
	Outcome            string
	WebhookResult      string   `json:"webhook_result"`
	Duration           *float64 // seconds
}

// String shows the fields a line of its kind has, and only those: a
// field that is there but should not be shows as a difference.
func (e logEntry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:", e.Level, e.Msg)
	for _, f := range []struct{ name, value string }{
		{"bot", e.Bot}, {"msg_id", e.MsgID}, {"msgtype", e.MsgType}, {"conversation", e.Conversation},
		{"sender_staff_id", e.SenderStaffID}, {"reason", e.Reason},
	} {
		if f.value != "" {
			fmt.Fprintf(&b, " %s=%s", f.name, f.value)
		}
	}
	if e.Text != nil {
		fmt.Fprintf(&b, " text=%q", *e.Text)
	}
	return b.String()
}

// moduleLog returns the lines the dingtalk module logged.
func moduleLog(t *testing.T, g *gateway) []logEntry {
	t.Helper()
	var entries []logEntry
	for line := range strings.Lines(g.logs()) {
		var e logEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if strings.HasPrefix(e.Logger, "http.handlers.dingtalk") {
			entries = append(entries, e)
		}
	}
	return entries
}

// Each request gets one line from the module: INFO when accepted or a
// duplicate, WARN when rejected. The message's text is logged only with
// log_text on.
func TestOneLogLinePerCallback(t *testing.T) {
	const secret = "logging secret"
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	config := func(option string) site {
		return site{FilterSign: true, Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			bot logged %q
			%s
		}
		reverse_proxy %s
	}`, secret, option, hostPort(upstream.URL))}
	}
	g := startGateway(t, config(""))

	private := dingtalktest.Callback{Text: "my private words", Group: true, SenderStaffID: "staff-7", MsgID: dingtalktest.NewMsgID()}
	g.post("/robot", secret, private.Body())
	g.post("/robot", secret, private.Body())
	g.post("/robot", "not the secret", private.Body())
	if strings.Contains(g.logs(), "my private words") {
		t.Fatal("the text was logged without log_text")
	}

	g.load(config("log_text on"))
	shared := dingtalktest.Callback{Text: "  words to log \n", MsgID: dingtalktest.NewMsgID()}
	g.post("/robot", secret, shared.Body())

	var got []string
	for _, e := range moduleLog(t, g) {
		got = append(got, e.String())
	}
	want := []string{
		"info dingtalk callback accepted: bot=logged msg_id=" + private.MsgID + " msgtype=text conversation=group sender_staff_id=staff-7",
		"info dingtalk callback is a duplicate; answered empty: bot=logged msg_id=" + private.MsgID + " msgtype=text conversation=group sender_staff_id=staff-7",
		"warn dingtalk callback rejected: reason=bad_sign",
		"info dingtalk callback accepted: bot=logged msg_id=" + shared.MsgID + " msgtype=text conversation=single sender_staff_id=user123 text=\"words to log\"",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the module logged\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
