package dingtalk

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readCallback(t testing.TB, name string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "callbacks", name))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestParseEveryMessageType(t *testing.T) {
	want := map[string]string{
		"audio.json": "audio", "file.json": "file", "group_text.json": "text", "picture.json": "picture",
		"rich_text.json": "richText", "single_text.json": "text", "string_numbers.json": "text",
		"unknown.json": "unknownMsgType", "video.json": "video",
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "callbacks", "*.json"))
	if len(files) != len(want) {
		t.Fatalf("found %d callbacks, want %d", len(files), len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		m, err := ParseMessage(readCallback(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if m.MsgType != want[name] || m.MsgID == "" || m.CreateAt != 1764295200000 || m.SessionWebhookExpiredTime != 1764300600000 {
			t.Errorf("%s: parsed %+v", name, m)
		}
		if m.MsgType != "text" && len(m.Content) == 0 {
			t.Errorf("%s: content not kept", name)
		}
	}
}

func TestParseGroupText(t *testing.T) {
	m, err := ParseMessage(readCallback(t, "group_text.json"))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"text":         {m.TrimmedText(), "hello robot"},
		"conversation": {m.Conversation(), "group"},
		"sender":       {m.SenderStaffID, "staff001"},
		"nick":         {m.SenderNick, "Li Lei"},
		"robot":        {m.RobotCode, "dingrobotexample"},
		"webhook":      {m.SessionWebhook, "https://oapi.dingtalk.com/robot/sendBySession?session=example0001"},
		"createAt":     {m.CreateAt.String(), "1764295200000"},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", what, c[0], c[1])
		}
	}
	if !m.IsAdmin || !m.IsInAtList || len(m.AtUsers) != 1 {
		t.Errorf("flags or atUsers lost: %+v", m)
	}
}

func TestSingleTextKeepsItsLines(t *testing.T) {
	m, err := ParseMessage(readCallback(t, "single_text.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.TrimmedText() != "你好\n第二行" || m.Conversation() != "single" {
		t.Fatalf("text %q, conversation %q", m.TrimmedText(), m.Conversation())
	}
}

func TestParseRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":              ``,
		"not JSON":           `hello`,
		"array":              `[]`,
		"truncated":          `{"msgtype":"text","msgId":"x"`,
		"no msgtype":         `{"msgId":"x"}`,
		"no msgId":           `{"msgtype":"text"}`,
		"msgId a number":     `{"msgtype":"text","msgId":1}`,
		"isAdmin a string":   `{"msgtype":"text","msgId":"x","isAdmin":"yes"}`,
		"createAt a word":    `{"msgtype":"text","msgId":"x","createAt":"soon"}`,
		"createAt a float":   `{"msgtype":"text","msgId":"x","createAt":1.5}`,
		"text not an object": `{"msgtype":"text","msgId":"x","text":"hi"}`,
	} {
		_, err := ParseMessage([]byte(body))
		if !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: error %v, want ErrInvalidMessage", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "yes") {
			t.Errorf("%s: error echoes body content: %v", name, err)
		}
	}
}

func TestWebhookExpired(t *testing.T) {
	m := Message{SessionWebhookExpiredTime: 2000}
	if m.WebhookExpired(time.UnixMilli(1999)) {
		t.Error("expired before its time")
	}
	if !m.WebhookExpired(time.UnixMilli(2000)) {
		t.Error("usable at its expiry time")
	}
	if !(&Message{}).WebhookExpired(time.UnixMilli(1)) {
		t.Error("a webhook without expiry must count as expired")
	}
}

// BenchmarkParseGroupText parses a group text callback as DingTalk sends
// it: compact JSON, in the string the handler reads the body into.
func BenchmarkParseGroupText(b *testing.B) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, readCallback(b, "group_text.json")); err != nil {
		b.Fatal(err)
	}
	body := compact.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseMessageString(body); err != nil {
			b.Fatal(err)
		}
	}
}
