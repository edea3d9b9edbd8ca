package event

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		plaintext string
		want      Event
	}{
		{`{"EventType":"check_url"}`, Event{Type: "check_url"}},
		{`{"EventType":"user_add_org","eventId":"e7ee3e9b","CorpId":"ding9f5","UserId":["u1"]}`,
			Event{Type: "user_add_org", ID: "e7ee3e9b", CorpID: "ding9f5"}},
		{`{"EventType":"bpms_instance_change","EventId":"E1","corpId":"dingc"}`, Event{Type: "bpms_instance_change", ID: "E1", CorpID: "dingc"}},
		{`{"EventType":"x","eventId":12345}`, Event{Type: "x", ID: "12345"}},
		{`{"EventType":"x","eventId":{"a":1},"CorpId":null}`, Event{Type: "x"}},
		{` {"EventType":"x"} `, Event{Type: "x"}},
	}
	for _, c := range cases {
		got, err := Parse([]byte(c.plaintext))
		if err != nil || got != c.want {
			t.Errorf("Parse(%s) = %+v, %v; want %+v", c.plaintext, got, err, c.want)
		}
	}
	for _, bad := range []string{``, `null`, `[]`, `"check_url"`, `{}`, `{"EventType":""}`, `{"EventType":1}`,
		`{"EventType":"x"`, `{"EventType":"x"} {}`, `{"EventType":"x"}success`} {
		if got, err := Parse([]byte(bad)); !errors.Is(err, ErrNotEvent) {
			t.Errorf("Parse(%s) = %+v, %v; want ErrNotEvent", bad, got, err)
		}
	}
}

func TestIsHandshake(t *testing.T) {
	for typ, want := range map[string]bool{
		"check_url": true, "check_create_suite_url": true, "check_update_suite_url": true,
		"user_add_org": false, "CHECK_URL": false, "": false,
	} {
		if got := (Event{Type: typ}).IsHandshake(); got != want {
			t.Errorf("IsHandshake(%q) = %v", typ, got)
		}
	}
}
