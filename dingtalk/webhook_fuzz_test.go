package dingtalk_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// FuzzWebhookPolicy checks that whatever Check accepts can only reach an
// allowed host: DingTalk's over https, or a listed loopback host:port.
func FuzzWebhookPolicy(f *testing.F) {
	for _, raw := range policyTricks {
		f.Add(raw)
	}
	for _, raw := range []string{
		"https://oapi.dingtalk.com/robot/sendBySession?session=abc",
		"HTTPS://OAPI.DINGTALK.COM/robot/sendBySession?session=abc",
		"http://127.0.0.1:8080/robot/sendBySession?session=abc",
		"https://localhost:9000/",
		"http://[::1]:7000/",
		"http://[::ffff:127.0.0.1]:8080/",
		"http://127.0.0.1:8080@evil.com/",
		"https://oapi.dingtalk.com%2F@evil.com/",
		"https://evil.com%23@oapi.dingtalk.com/",
		"https://evil.com?@oapi.dingtalk.com/",
		"https://evil.com/.oapi.dingtalk.com",
		"https://oapi.dingtalk.com%00.evil.com/",
		"https://0x7f.0.0.1:8080/",
	} {
		f.Add(raw)
	}
	p, err := dingtalk.NewWebhookPolicy([]string{"oapi.dingtalk.com", "127.0.0.1:8080", "localhost:9000", "[::1]:7000"})
	if err != nil {
		f.Fatal(err)
	}
	loopback := map[string]bool{"127.0.0.1:8080": true, "localhost:9000": true, "[::1]:7000": true}

	f.Fuzz(func(t *testing.T, raw string) {
		u, err := p.Check(raw)
		if err != nil {
			if u != nil || !errors.Is(err, dingtalk.ErrWebhookNotAllowed) {
				t.Fatalf("Check(%q) = %v, %v", raw, u, err)
			}
			return
		}
		host := strings.ToLower(u.Hostname())
		allowed := host == dingtalk.DefaultWebhookHost && u.Host == host && u.Scheme == "https" ||
			loopback[strings.ToLower(u.Host)] && (u.Scheme == "http" || u.Scheme == "https")
		if !allowed || u.User != nil || strings.Contains(raw, `\`) {
			t.Fatalf("Check(%q) accepted scheme %q, host %q, user %v", raw, u.Scheme, u.Host, u.User)
		}
		// The client sends u.String(): it must read back as the same target.
		again, err := url.Parse(u.String())
		if err != nil || again.Scheme != u.Scheme || again.Host != u.Host || again.User != nil {
			t.Fatalf("Check(%q) = %q, which parses again as %v, %v", raw, u, again, err)
		}
	})
}

// FuzzRedactWebhook checks that RedactWebhook never panics and leaves no
// query value other than REDACTED.
func FuzzRedactWebhook(f *testing.F) {
	for _, raw := range policyTricks {
		f.Add(raw)
	}
	f.Add("https://x.example/p?a=1&b=&bare&&c=2;d=3")
	f.Add("https://u:p@x.example/?a=%zz#frag")
	f.Add("https://x.example/%zz?session=" + testToken) // does not parse
	f.Fuzz(func(t *testing.T, raw string) {
		out := dingtalk.RedactWebhook(raw)
		u, err := url.Parse(out)
		if err != nil {
			// Only the placeholder may stand for what does not parse:
			// anything else unparsable could still hold the token.
			t.Fatalf("RedactWebhook(%q) = %q, which does not parse: %v", raw, out, err)
		}
		for _, param := range strings.Split(u.RawQuery, "&") {
			if _, value, ok := strings.Cut(param, "="); ok && value != "REDACTED" || !ok && param != "" && param != "REDACTED" {
				t.Fatalf("RedactWebhook(%q) = %q, which keeps %q", raw, out, param)
			}
		}
	})
}
