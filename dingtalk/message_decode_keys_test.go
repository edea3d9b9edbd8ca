package dingtalk

import (
	"reflect"
	"strings"
	"testing"
)

// The positions field reports must be messageKeys', or the predictions that
// the decoder learns would name other keys and never hold.
func TestFieldPositionsAreMessageKeys(t *testing.T) {
	values := map[reflect.Type]string{
		reflect.TypeFor[string]():       `"x"`,
		reflect.TypeFor[Millis]():       `1`,
		reflect.TypeFor[bool]():         `true`,
		reflect.TypeFor[*TextContent](): `{"content":"x"}`,
		reflect.TypeFor[[]AtUser]():     `[]`,
		reflect.TypeFor[[]byte]():       `{}`,
	}
	mt := reflect.TypeFor[Message]()
	for i := range mt.NumField() {
		f := mt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Uint8 {
			ft = reflect.TypeFor[[]byte]()
		}
		value, ok := values[ft]
		if !ok {
			t.Fatalf("%s: no sample value for %v", name, f.Type)
		}
		d := messageDecoder{s: value, parts: new(messageParts)}
		k, ok := d.field(name, &d.parts.m)
		if !ok || k != messageKeys[name] {
			t.Errorf("field(%q) = %d, %v; messageKeys has %d", name, k, ok, messageKeys[name])
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
