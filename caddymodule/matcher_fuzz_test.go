package caddymodule

import (
	"regexp"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// FuzzMatcher checks the dingtalk matcher against a plain reading of its
// conditions, whatever the message says: it never matches a request the
// handler did not verify, it matches a verified one exactly when every
// condition holds, and the text's captures are published as
// {http.regexp.<name>.N}.
func FuzzMatcher(f *testing.F) {
	for _, seed := range []struct {
		text, staffID, msgType            string
		group, admin, mentioned, verified bool
	}{
		{"/deploy prod", "boss", "text", true, true, true, true},
		{" /deploy prod ", "boss", "text", true, true, false, false},
		{"/deploy prod", "", "text", true, true, true, true},
		{"/deploy\nprod", "ops", "text", true, true, true, true},
		{"/deploy prod", "boss", "picture", true, true, true, true},
		{"/deploy prod", "BOSS", "text", false, true, true, true},
		{"\xff/deploy", "boss", "text", true, false, true, true},
	} {
		f.Add(seed.text, seed.staffID, seed.msgType, seed.group, seed.admin, seed.mentioned, seed.verified)
	}
	const pattern = `^/(\w+)\s*(.*)$`
	strict := &MatchDingTalk{
		Text:     &caddyhttp.MatchRegexp{Name: "cmd", Pattern: pattern},
		MsgTypes: []string{"text"}, Conversation: "group", Senders: []string{"boss", "ops"}, Bots: []string{"default"}, Admin: true,
	}
	if err := strict.Provision(caddy.Context{}); err != nil {
		f.Fatal(err)
	}
	if err := strict.Validate(); err != nil {
		f.Fatal(err)
	}
	mentioned := &MatchDingTalk{Mentioned: true}
	anything := &MatchDingTalk{}
	re := regexp.MustCompile(pattern)

	f.Fuzz(func(t *testing.T, text, staffID, msgType string, group, admin, isMentioned, verified bool) {
		body := callbackBody(dingtalktest.Callback{Group: group}, func(m *dingtalk.Message) {
			m.Text.Content, m.SenderStaffID, m.IsAdmin, m.IsInAtList = text, staffID, admin, isMentioned
			if msgType != "" {
				m.MsgType = msgType
			}
		})
		r, repl := unverifiedRequest(body)
		if verified {
			r, repl = verifiedRequest(t, "default", body)
		}
		in, _ := dingtalk.ParseMessage(body)
		match := func(m *MatchDingTalk) bool {
			ok, err := m.MatchWithError(r)
			if err != nil {
				t.Fatalf("MatchWithError: %v", err)
			}
			return ok
		}

		captures := re.FindStringSubmatch(in.TrimmedText())
		want := verified && in.MsgType == "text" && in.Conversation() == "group" &&
			slices.Contains([]string{"boss", "ops"}, in.SenderStaffID) && in.IsAdmin && captures != nil
		if got := match(strict); got != want {
			t.Fatalf("strict matcher: %v, want %v (message %+v)", got, want, in)
		}
		if want {
			for i, c := range captures[1:] {
				if got, _ := repl.GetString("http.regexp.cmd." + string(rune('1'+i))); got != c {
					t.Fatalf("capture %d is %q, want %q", i+1, got, c)
				}
			}
		}
		if got := match(mentioned); got != (verified && in.IsInAtList) {
			t.Fatalf("mentioned matcher: %v, verified %v, isInAtList %v", got, verified, in.IsInAtList)
		}
		if got := match(anything); got != verified {
			t.Fatalf("a matcher without conditions: %v, verified %v", got, verified)
		}
	})
}
