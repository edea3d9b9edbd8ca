package dingtalk

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// A key's position must be the same everywhere: messageKeys numbers the
// keys in the order of Message's fields, and field must fill, for each
// position, the field there, or the decoder would fill the wrong field for a
// predicted key.
func TestKeyPositions(t *testing.T) {
	values := map[reflect.Type]string{
		reflect.TypeFor[string]():          `"x"`,
		reflect.TypeFor[Millis]():          `1`,
		reflect.TypeFor[bool]():            `true`,
		reflect.TypeFor[*TextContent]():    `{"content":"x"}`,
		reflect.TypeFor[[]AtUser]():        `[{}]`,
		reflect.TypeFor[json.RawMessage](): `{}`,
	}
	mt := reflect.TypeFor[Message]()
	if mt.NumField() != keyCount || len(messageKeys) != keyCount {
		t.Fatalf("Message has %d fields, messageKeys %d keys, keyCount is %d", mt.NumField(), len(messageKeys), keyCount)
	}
	for k := range keyCount {
		f := mt.Field(k)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if messageKeys[name] != k {
			t.Errorf("%s: messageKeys has position %d, the field is at %d", name, messageKeys[name], k)
		}
		value, ok := values[f.Type]
		if !ok {
			t.Fatalf("%s: no sample value for %v", name, f.Type)
		}
		var m Message
		d := messageDecoder{s: value, parts: new(messageParts)}
		if !d.field(k, name, &m) || reflect.ValueOf(m).Field(k).IsZero() {
			t.Errorf("field(%d) did not fill %s from %s: %+v", k, f.Name, value, m)
		}
	}
}

// The decoder learns the order of the keys, and a body in another order,
// whose keys begin like the predicted ones, decodes all the same.
func TestKeyPredictions(t *testing.T) {
	decode := func(body string) Message {
		t.Helper()
		var p messageParts
		if ok, _ := decodeMessage(body, &p); !ok {
			t.Fatalf("the fast path gave up on %s", body)
		}
		return p.m
	}
	decode(`{"msgtype":"text","senderId":"s","msgId":"m"}`)
	if got := quotedKeys[keyAfter[keyCount].Load()]; got != `"msgtype"` {
		t.Errorf("first key predicted: %s", got)
	}
	if got := quotedKeys[keyAfter[messageKeys["senderId"]].Load()]; got != `"msgId"` {
		t.Errorf("key after senderId predicted: %s", got)
	}
	m := decode(`{"msgtypes":1,"msgId":"m2","senderIdX":"x","senderId":"s2","msgtype":"picture"}`)
	if m.MsgType != "picture" || m.MsgID != "m2" || m.SenderID != "s2" {
		t.Errorf("decoded %+v", m)
	}
}
