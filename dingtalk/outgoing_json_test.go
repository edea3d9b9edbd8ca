package dingtalk

import (
	"encoding/json"
	"reflect"
	"testing"
)

// filledMessage is an OutgoingMessage with every field set, found by
// reflection, so that a field added to any of its types and not to
// AppendJSON fails TestAppendJSONEncodesEveryField: each string is the
// next of texts (round and round), each slice has n elements, each bool
// is set when n is odd.
func filledMessage(texts []string, n int) *OutgoingMessage {
	next := 0
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			v.SetString(texts[next%len(texts)])
			next++
		case reflect.Bool:
			v.SetBool(n%2 == 1)
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem())
		case reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				fill(v.Index(i))
			}
		case reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i))
			}
		default:
			panic("filledMessage: a field of kind " + v.Kind().String() + " is new: teach AppendJSON and this test about it")
		}
	}
	var o OutgoingMessage
	fill(reflect.ValueOf(&o).Elem())
	return &o
}

// sameAsMarshal fails t unless AppendJSON encodes o as json.Marshal does.
func sameAsMarshal(t *testing.T, o *OutgoingMessage) {
	t.Helper()
	want, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.AppendJSON([]byte("prefix")); string(got) != "prefix"+string(want) {
		t.Fatalf("AppendJSON gave\n%s\njson.Marshal\n%s", got[len("prefix"):], want)
	}
}

func TestAppendJSONEncodesEveryField(t *testing.T) {
	texts := []string{"hello", "", `"quoted" \ back`, "<b>&amp;</b>", "line\nbreak\ttab\r\b\f\x00\x1f\x7f",
		"你好 🙂", "bad \xff\xfe utf-8", "\u2028 and \u2029", "é", "\xe2\x80"}
	for n := range 4 {
		for shift := range texts {
			sameAsMarshal(t, filledMessage(append(texts[shift:], texts[:shift]...), n))
		}
	}
	// Every constructor's message, and a feed card whose links are nil
	// (encoded null, as Marshal does) or empty.
	text := NewText("hi")
	_ = text.MentionSender(&Message{SenderStaffID: "staff"})
	markdown := NewMarkdown("t", "x")
	_ = markdown.MentionSender(&Message{SenderID: "$:LWCP"})
	_ = markdown.MentionAll()
	for _, o := range []*OutgoingMessage{
		NewEmpty(), text, markdown, NewLink("t", "x", "https://a", ""), NewLink("t", "x", "https://a", "https://p"),
		NewSingleActionCard("t", "x", "Read more", "https://a"),
		NewActionCard("t", "x", ActionCardButton{"a", "https://a"}, ActionCardButton{"b", "https://b"}),
		NewFeedCard(), NewFeedCard([]FeedCardLink{}...), NewFeedCard(FeedCardLink{"t", "https://a", "https://p"}),
		{MsgType: MsgTypeText, At: &At{}},
	} {
		sameAsMarshal(t, o)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("hello", `"<&>"`, uint8(1))
	f.Add("\xff\u2028\x00", "你好", uint8(2))
	f.Fuzz(func(t *testing.T, a, b string, n uint8) {
		sameAsMarshal(t, filledMessage([]string{a, b}, int(n%4)))
		sameAsMarshal(t, NewText(a+b))
	})
}
