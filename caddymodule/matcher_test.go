package caddymodule

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// parseMatcher sets up `@<name> dingtalk <rest>` as Caddy does.
func parseMatcher(t testing.TB, name, rest string) *MatchDingTalk {
	t.Helper()
	d := caddyfile.NewTestDispenser("dingtalk " + rest)
	d.SetContext(caddyfile.MatcherNameCtxKey, name)
	m := new(MatchDingTalk)
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatalf("parsing %q: %v", rest, err)
	}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// callbackBody returns a realistic callback, changed by edit.
func callbackBody(c dingtalktest.Callback, edit func(*dingtalk.Message)) []byte {
	m := c.Message()
	if edit != nil {
		edit(&m)
	}
	body, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return body
}

func TestMatcher(t *testing.T) {
	weather := dingtalktest.Callback{Text: "/weather Hangzhou"}.Body()
	groupHelp := dingtalktest.Callback{Text: "help", Group: true}.Body() // " help", @mentioned
	picture := callbackBody(dingtalktest.Callback{}, func(m *dingtalk.Message) {
		m.MsgType, m.Text, m.Content = "picture", nil, json.RawMessage(`{"downloadCode":"x"}`)
	})
	external := dingtalktest.Callback{Text: "hi", Anonymous: true}.Body()
	notAdmin := callbackBody(dingtalktest.Callback{Text: "hi"}, func(m *dingtalk.Message) { m.IsAdmin = false })

	cases := []struct {
		name  string
		block string
		bot   string
		body  []byte
		want  bool
	}{
		{"no conditions: any verified callback", "", "default", picture, true},
		{"text", `{
			text ^/weather\s+(\S+)
		}`, "default", weather, true},
		{"text does not match", `{
			text ^/ask\s
		}`, "default", weather, false},
		{"text is trimmed of the group's leading space", `{
			text ^help$
		}`, "default", groupHelp, true},
		{"a picture has no text", `{
			text .
		}`, "default", picture, false},
		{"msgtype alternatives", `{
			msgtype picture richText
		}`, "default", picture, true},
		{"msgtype other", `{
			msgtype picture richText
		}`, "default", weather, false},
		{"conversation single", `{
			conversation single
		}`, "default", weather, true},
		{"conversation group", `{
			conversation group
		}`, "default", weather, false},
		{"conversation_id", `{
			conversation_id cidOther cidGroup123==
		}`, "default", groupHelp, true},
		{"conversation_id other", `{
			conversation_id cidOther
		}`, "default", groupHelp, false},
		{"sender", `{
			sender boss user123
		}`, "default", weather, true},
		{"sender other", `{
			sender boss
		}`, "default", weather, false},
		{"sender never matches an external user", `{
			sender boss user123
		}`, "default", external, false},
		{"bot", `{
			bot sales support
		}`, "support", weather, true},
		{"bot other", `{
			bot sales
		}`, "support", weather, false},
		{"admin", `{
			admin
		}`, "default", weather, true},
		{"admin: not an admin", `{
			admin
		}`, "default", notAdmin, false},
		{"mentioned", `{
			mentioned
		}`, "default", groupHelp, true},
		{"mentioned: not in the at list", `{
			mentioned
		}`, "default", weather, false},
		{"all conditions hold", `{
			text ^help
			conversation group
			mentioned
			bot default
		}`, "default", groupHelp, true},
		{"one condition fails", `{
			text ^help
			conversation single
		}`, "default", groupHelp, false},
		{"merged dingtalk matchers are ANDed", `{
			text ^help
		}
		dingtalk {
			conversation single
		}`, "default", groupHelp, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := parseMatcher(t, "m", c.block)
			r, _ := verifiedRequest(t, c.bot, c.body)
			got, err := m.MatchWithError(r)
			if err != nil || got != c.want {
				t.Errorf("match = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestMatcherNeverMatchesUnverifiedRequests(t *testing.T) {
	for _, block := range []string{"", "{\n\ttext .*\n}", "{\n\tmsgtype text\n}"} {
		m := parseMatcher(t, "m", block)
		r, repl := unverifiedRequest(dingtalktest.Callback{Text: "/weather Hangzhou"}.Body())
		if got, err := m.MatchWithError(r); got || err != nil {
			t.Errorf("%q matched an unverified request: %v, %v", block, got, err)
		}
		if _, set := repl.Get("http.regexp.m.0"); set {
			t.Errorf("%q published captures for an unverified request", block)
		}
	}
}

func TestMatcherPublishesCaptures(t *testing.T) {
	m := parseMatcher(t, "weather", `{
		text ^/weather\s+(\S+)(?:\s+(?P<day>\w+))?
	}`)
	r, repl := verifiedRequest(t, "default", dingtalktest.Callback{Text: "  /weather Hangzhou tomorrow "}.Body())
	if ok, _ := m.MatchWithError(r); !ok {
		t.Fatal("no match")
	}
	for placeholder, want := range map[string]string{
		"{http.regexp.weather.0}":   "/weather Hangzhou tomorrow",
		"{http.regexp.weather.1}":   "Hangzhou",
		"{http.regexp.weather.day}": "tomorrow",
		"{http.regexp.1}":           "Hangzhou",
	} {
		if got := repl.ReplaceAll(placeholder, "<unset>"); got != want {
			t.Errorf("%s = %q, want %q", placeholder, got, want)
		}
	}

	named := parseMatcher(t, "weather", `{
		text city ^/weather\s+(\S+)
	}`)
	r, repl = verifiedRequest(t, "default", dingtalktest.Callback{Text: "/weather Paris"}.Body())
	if ok, _ := named.MatchWithError(r); !ok {
		t.Fatal("no match")
	}
	if got := repl.ReplaceAll("{http.regexp.city.1}", ""); got != "Paris" {
		t.Errorf("named capture = %q", got)
	}

	// A text that matches while another condition fails publishes nothing.
	adminOnly := parseMatcher(t, "weather", `{
		text ^/weather\s+(\S+)
		admin
	}`)
	r, repl = verifiedRequest(t, "default", callbackBody(dingtalktest.Callback{Text: "/weather Oslo"}, func(m *dingtalk.Message) { m.IsAdmin = false }))
	if ok, _ := adminOnly.MatchWithError(r); ok {
		t.Fatal("matched a non-admin")
	}
	if v, set := repl.Get("http.regexp.weather.1"); set {
		t.Errorf("capture published for a request that did not match: %v", v)
	}
}

// The matcher in a CEL expression, as `expression dingtalk({...})` or a
// quoted named matcher use it.
func TestMatcherInCELExpression(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	cases := []struct {
		expr    string
		body    []byte
		want    bool
		capture string // {http.regexp.cel.1} after a match
	}{
		{`dingtalk({'text': '^/weather\\s+(\\S+)', 'conversation': 'single'})`, dingtalktest.Callback{Text: "/weather Rome"}.Body(), true, "Rome"},
		{`dingtalk({'text': '^/weather'}) && dingtalk({'sender': ['boss', 'user123']})`, dingtalktest.Callback{Text: "/weather Rome"}.Body(), true, ""},
		{`dingtalk({'msgtype': ['picture']}) || dingtalk({'admin': 'true'})`, dingtalktest.Callback{Text: "x"}.Body(), true, ""},
		{`dingtalk({'mentioned': 'true'})`, dingtalktest.Callback{Text: "x"}.Body(), false, ""},
		{`!dingtalk({'conversation': 'group'})`, dingtalktest.Callback{Text: "x"}.Body(), true, ""},
	}
	for _, c := range cases {
		m := &caddyhttp.MatchExpression{Expr: c.expr, Name: "cel"}
		if err := m.Provision(ctx); err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		r, repl := verifiedRequest(t, "default", c.body)
		got, err := m.MatchWithError(r)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.expr, got, err, c.want)
		}
		if capture := repl.ReplaceAll("{http.regexp.cel.1}", ""); capture != c.capture {
			t.Errorf("%s: capture %q, want %q", c.expr, capture, c.capture)
		}
	}

	unverified, _ := unverifiedRequest(dingtalktest.Callback{Text: "/weather Rome"}.Body())
	m := &caddyhttp.MatchExpression{Expr: `dingtalk({'text': '.*'})`, Name: "cel"}
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.MatchWithError(unverified); got {
		t.Error("CEL dingtalk() matched an unverified request")
	}

	for _, bad := range []string{
		`dingtalk({'admin': 'false'})`,
		`dingtalk({'colour': 'red'})`,
		`dingtalk({'conversation': 'both'})`,
		`dingtalk({'text': '('})`,
	} {
		m := &caddyhttp.MatchExpression{Expr: bad, Name: "cel"}
		if err := m.Provision(ctx); err == nil {
			t.Errorf("%s: provisioned without error", bad)
		}
	}
}
