package caddymodule

import (
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A user's text put into a URL through a .urlencoded placeholder stays one
// query value: it cannot add parameters, a fragment or a path.
func TestURLEncodedPlaceholdersEscapeURLSyntax(t *testing.T) {
	text := "a&admin=true+1 #frag?x=/../@evil:80;$,"
	_, repl := verifiedRequest(t, "default", dingtalktest.Callback{Text: text}.Body())
	got := repl.ReplaceAll("https://example.com/s?q={http.dingtalk.text.urlencoded}", "")
	want := "https://example.com/s?q=a%26admin%3Dtrue%2B1%20%23frag%3Fx%3D%2F..%2F%40evil%3A80%3B%24%2C"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	u, err := url.Parse(got)
	if err != nil || len(u.Query()) != 1 || u.Query().Get("q") != text || u.Fragment != "" {
		t.Fatalf("%s reads back as %v, %v", got, u.Query(), err)
	}
	if decoded, err := url.PathUnescape(got[len("https://example.com/s?q="):]); err != nil || decoded != text {
		t.Fatalf("decodeURIComponent-style decoding gives %q, %v", decoded, err)
	}
}

// The verified message travels in a request variable. Only the handler can
// make one that counts: a variable of that name set another way (the vars
// directive sets strings) does not, and in placeholders it shows the bot's
// name, never the user's text.
func TestVerifiedVariable(t *testing.T) {
	r, repl := verifiedRequest(t, "default", dingtalktest.Callback{Text: "private words"}.Body())
	if v, ok := VerifiedFrom(r.Context()); !ok || v.Bot != "default" || v.Message.TrimmedText() != "private words" {
		t.Fatalf("VerifiedFrom = %+v, %v", v, ok)
	}
	if got := repl.ReplaceAll("{http.vars."+verifiedVar+"}", ""); got != "default" {
		t.Errorf("{http.vars.%s} = %q, want the bot's name", verifiedVar, got)
	}

	forged, _ := unverifiedRequest(dingtalktest.Callback{Text: "hi"}.Body())
	caddyhttp.SetVar(forged.Context(), verifiedVar, "default")
	if v, ok := VerifiedFrom(forged.Context()); ok {
		t.Fatalf("a string variable counts as verified: %+v", v)
	}
}

// Keys kept in a keyRoom stay as they were while more are kept after them,
// whether they fit in the room or were too long for it.
func TestKeyRoomKeepsKeys(t *testing.T) {
	var room keyRoom
	want := []string{"msg:dingrobot1:short", strings.Repeat("L", 200), "sig:1700000000000:" + strings.Repeat("r", 32), strings.Repeat("x", 100)}
	var kept []string
	for _, key := range want {
		kept = append(kept, room.keep(append(room.free(), key...)))
	}
	for i := range want {
		if kept[i] != want[i] {
			t.Errorf("key %d is %q, want %q", i, kept[i], want[i])
		}
	}
	if room.used != len(want[0])+len(want[2]) {
		t.Errorf("%d bytes of the room are used, want the two keys that fit: %d", room.used, len(want[0])+len(want[2]))
	}
}
