package dingtalk

import (
	"errors"
	"strings"
	"testing"
)

// Bodies that encoding/json reads differently from a parser that matches
// keys exactly (Python, Node, Jackson) are refused: the msgId de-duplicated
// on and the robotCode checked here must be the ones the backend reads.
func TestParseRejectsBodiesReadDifferentlyElsewhere(t *testing.T) {
	for name, body := range map[string]string{
		"msgId twice":                    `{"msgtype":"text","msgId":"a","msgId":"b"}`,
		"msgId twice, once escaped":      `{"msgtype":"text","msgId":"a","msg\u0049d":"b"}`,
		"robotCode in other case":        `{"msgtype":"text","msgId":"a","robotCode":"other","ROBOTCODE":"dingrobot1"}`,
		"msgId only in other case":       `{"msgtype":"text","MsgId":"a"}`,
		"msgid in lower case":            `{"msgtype":"text","msgId":"a","msgid":"b"}`,
		"long s folds to s":              `{"msgtype":"text","msgId":"a","\u017fessionWebhook":"https://evil.example/"}`,
		"an unknown key twice":           `{"msgtype":"text","msgId":"a","extra":1,"extra":2}`,
		"an unknown key twice, escaped":  `{"msgtype":"text","msgId":"a","x":1,"\u0078":2}`,
		"invalid UTF-8 keys that merge":  "{\"msgtype\":\"text\",\"msgId\":\"a\",\"\xff\":1,\"\xfe\":2}",
		"nested too deep":                `{"msgtype":"text","msgId":"a","x":` + strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting) + `}`,
		"nested too deep in a raw field": `{"msgtype":"picture","msgId":"a","content":` + strings.Repeat(`{"a":`, maxNesting) + "1" + strings.Repeat("}", maxNesting) + `}`,
	} {
		_, err := ParseMessage([]byte(body))
		if !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: error %v, want ErrInvalidMessage", name, err)
		}
	}
}

func TestParseAcceptsUnambiguousBodies(t *testing.T) {
	for name, c := range map[string]struct{ body, msgID string }{
		"an escaped field key":          {`{"msgtype":"text","msg\u0049d":"a"}`, "a"},
		"unknown keys":                  {`{"msgtype":"text","msgId":"a","extra":1,"Extra":2,"EXTRA":3}`, "a"},
		"a nested key twice":            {`{"msgtype":"text","msgId":"a","text":{"content":"x","content":"y"}}`, "a"},
		"field names nested":            {`{"msgtype":"text","msgId":"a","x":{"msgId":"b","MSGID":"c"},"y":["msgId"]}`, "a"},
		"brackets and quotes in values": {`{"msgtype":"text","msgId":"a\"[{","text":{"content":"]]]}}\\"}}`, "a\"[{"},
		"deepest allowed":               {`{"msgtype":"text","msgId":"a","x":` + strings.Repeat("[", maxNesting-1) + strings.Repeat("]", maxNesting-1) + `}`, "a"},
		"spaces around":                 {" \r\n\t{ \"msgtype\" : \"text\" , \"msgId\" : \"a\" } \n", "a"},
	} {
		m, err := ParseMessage([]byte(c.body))
		if err != nil || m.MsgID != c.msgID {
			t.Errorf("%s: got %+v, %v", name, m, err)
		}
	}
}

func BenchmarkCheckShape(b *testing.B) {
	body := string(readCallback(b, "group_text.json"))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := checkShape(body); err != nil {
			b.Fatal(err)
		}
	}
}
