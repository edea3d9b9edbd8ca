package dingtalk

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// decodeTricks are bodies at the edges of what ParseMessage's fast path
// reads: each must decode as encoding/json decodes it, or not at all.
var decodeTricks = []string{
	`{"msgtype":"text","msgId":"m","text":{"content":"a\nb \"q\" \\ \/ \t\r\b\f"}}`,
	`{"msgtype":"text","msgId":"m","text":{"content":"\u4f60\u597d"}}`,
	`{"msgtype":"text","msgId":"m","text":{"content":"\ud800"}}`,
	`{"msgtype":"text","msgId":"m","text":{"content":"bad ` + "\xff" + ` utf-8"}}`,
	`{"msgtype":"text","msgId":"m","text":{"content":"bad\n` + "\xff" + ` utf-8"}}`,
	`{"msgtype":"text","msgId":"m","MSGID":"other"}`,
	`{"msgtype":"text","msgId":"m","msgId":"again"}`,
	`{"msgtype":"text","msgId":"m","text":{"content":"a","content":"b"}}`,
	`{"msgtype":"text","msgId":"m","text":{"content":"a","Content":"b"}}`,
	`{"msgtype":"text","msgId":"m","text":null}`,
	`{"msgtype":"text","msgId":"m","senderNick":null,"isAdmin":null,"createAt":null}`,
	`{"msgtype":"text","msgId":"m","createAt":1.5e3}`,
	`{"msgtype":"text","msgId":"m","createAt":0123}`,
	`{"msgtype":"text","msgId":"m","createAt":-0}`,
	`{"msgtype":"text","msgId":"m","createAt":"+12"}`,
	`{"msgtype":"text","msgId":"m","createAt":99999999999999999999}`,
	`{"msgtype":"text","msgId":"m","createAt":-1764295200000,"sessionWebhookExpiredTime":999999999999999999}`,
	`{"msgtype":"text","msgId":"m","createAt":9223372036854775807,"sessionWebhookExpiredTime":-9223372036854775808}`,
	`{"msgtype":"text","msgId":"m","createAt":9223372036854775808}`,
	`{"msgtype":"text","msgId":"m","createAt":"-0012","sessionWebhookExpiredTime":"9223372036854775807"}`,
	`{"msgtype":"text","msgId":"m","isAdmin":"true"}`,
	`{"msgtype":"text","msgId":"m","atUsers":[]}`,
	`{"msgtype":"text","msgId":"m","atUsers":[{},{"staffId":"s","extra":[1,{"a":"}"}]}]}`,
	`{"msgtype":"text","msgId":"m","atUsers":[{"dingtalkId":"a","dingtalkId":"b"}]}`,
	`{"msgtype":"picture","msgId":"m","content":{"downloadCode":"x","n":[1,2,{"k":"]"}]}}`,
	`{"msgtype":"picture","msgId":"m","content":"just a string"}`,
	`{"msgtype":"picture","msgId":"m","content":null}`,
	`{"msgtype":"picture","msgId":"m","content": 12 }`,
	`{"msgtype":"text","msgId":"m","newField":{"deep":[[["\"}"]]]},"another":-1.5e-7,"t":true}`,
	`{"msgtype":"text","msgId":"m","bad":{"a":]}}`,
	`{"msgtype":"text","msgId":"m","bad":01}`,
	` { "msgtype" : "text" , "msgId" : "m" } ` + "\n",
	`{"msgtype":"text","msgId":"m"} trailing`,
	`{"msgtype":"text","msgId":"m",}`,
	`{"msgtype":"text" "msgId":"m"}`,
	"\ufeff" + `{"msgtype":"text","msgId":"m"}`,
	`{"msgtype":"te` + "\x01" + `xt","msgId":"m"}`,
	`{}`, `[]`, `null`, ``, `"text"`,
	`{"msgtype":"text","msgId":"m","extra":1,"extra":2}`,
	`{"msgtype":"text","msgId":"m","atUsers":[{"staffId":"s","x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}]}`,
}

// FuzzDecodeMessage checks ParseMessage's fast path against encoding/json:
// whatever the fast path decodes, encoding/json decodes to the same Message;
// and when the fast path says the shape is checked, checkShape agrees.
func FuzzDecodeMessage(f *testing.F) {
	for _, file := range callbackFiles(f) {
		f.Add(readCallback(f, filepath.Base(file)))
	}
	for _, body := range decodeTricks {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var parts messageParts
		decoded, shapeChecked := decodeMessage(string(body), &parts)
		fast := parts.m
		if !decoded {
			return
		}
		if err := checkShape(string(body)); shapeChecked && err != nil {
			t.Fatalf("the fast path passed a body of the wrong shape (%v): %q", err, body)
		}
		var std Message
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("the fast path decoded what encoding/json rejects (%v): %q", err, body)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("%q\nfast path:     %#v\nencoding/json: %#v", body, fast, std)
		}
	})
}

// The fast path must be the one DingTalk's bodies take, or it is dead weight.
func TestDingTalkBodiesTakeTheFastPath(t *testing.T) {
	for _, file := range callbackFiles(t) {
		if decoded, _ := decodeMessage(string(readCallback(t, filepath.Base(file))), new(messageParts)); !decoded {
			t.Errorf("%s: the fast path gave up", filepath.Base(file))
		}
	}
}

// callbackFiles lists testdata/callbacks; none is a mistake, not a pass.
func callbackFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "callbacks", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no callbacks in testdata/callbacks: %v", err)
	}
	return files
}
