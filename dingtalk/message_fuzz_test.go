package dingtalk_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// FuzzParseMessage checks that ParseMessage never panics, that a message
// it accepts has a msgtype and a msgId and survives a round trip through
// json.Marshal, and that a parser matching keys exactly (as Python, Node
// and Jackson do) reads the same msgtype, msgId, robotCode and
// sessionWebhook: the fields this gateway acts on.
func FuzzParseMessage(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "callbacks", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no sample callbacks: %v", err)
	}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, body := range []string{
		``, `null`, `[]`, `"x"`, `{}`,
		`{"msgtype":"text","msgId":"a","msgId":"b"}`,
		`{"msgtype":"text","msgId":"a","MSGID":"b"}`,
		`{"msgtype":"text","msg\u0049d":"a"}`,
		`{"msgtype":"text","msgId":"a","createAt":"1764295200000","sessionWebhookExpiredTime":null}`,
		`{"msgtype":"text","msgId":"a\"[{","text":{"content":"]]\\"}}`,
		`{"msgtype":"text","msgId":"a","x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
		"{\"msgtype\":\"text\",\"msgId\":\"\xff\"}",
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := dingtalk.ParseMessage(body)
		if err != nil {
			if m != nil || !errors.Is(err, dingtalk.ErrInvalidMessage) {
				t.Fatalf("ParseMessage = %v, %v", m, err)
			}
			return
		}
		if m.MsgType == "" || m.MsgID == "" {
			t.Fatalf("accepted without msgtype or msgId: %+v", m)
		}
		out, err := json.Marshal(m)
		if err != nil || !json.Valid(out) {
			t.Fatalf("an accepted message does not marshal to JSON: %v\n%s", err, out)
		}
		again, err := dingtalk.ParseMessage(out)
		if err != nil || again.MsgType != m.MsgType || again.MsgID != m.MsgID || again.RobotCode != m.RobotCode ||
			again.SessionWebhook != m.SessionWebhook || again.TrimmedText() != m.TrimmedText() {
			t.Fatalf("round trip changed the message: %+v, %v\nwas %+v", again, err, m)
		}

		var exact map[string]json.RawMessage
		if err := json.Unmarshal(body, &exact); err != nil {
			t.Fatalf("accepted a body that is not a JSON object: %v", err)
		}
		for key, want := range map[string]string{
			"msgtype": m.MsgType, "msgId": m.MsgID, "robotCode": m.RobotCode, "sessionWebhook": m.SessionWebhook,
		} {
			var got string
			if raw, ok := exact[key]; ok {
				if err := json.Unmarshal(raw, &got); err != nil {
					t.Fatalf("%s: %v", key, err)
				}
			}
			if got != want {
				t.Fatalf("%s reads %q here and %q to an exact-key parser", key, want, got)
			}
		}
	})
}
