package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// routingRecipe returns the `route /robot` block of the routing example's
// Caddyfile with its upstreams moved to weather and ask: the test runs the
// recipe the README documents, not a copy of it.
func routingRecipe(t *testing.T, weather, ask string) string {
	t.Helper()
	data, err := os.ReadFile("../examples/routing/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\troute /robot {\n")
	length := strings.Index(text[max(start, 0):], "\n\t}\n")
	if start < 0 || length < 0 {
		t.Fatal("no `route /robot { ... }` block in the example's Caddyfile")
	}
	block := text[start : start+length+len("\n\t}")]
	for _, addr := range []string{"localhost:9001", "localhost:9002"} {
		if !strings.Contains(block, addr) {
			t.Fatalf("the example no longer proxies to %s; update this test", addr)
		}
	}
	return strings.NewReplacer("localhost:9001", weather, "localhost:9002", ask).Replace(block)
}

// namedUpstream is a recording upstream that answers with its name.
func namedUpstream(name string) *dingtalktest.Recorder {
	rec := dingtalktest.NewRecorder()
	rec.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		body, _ := json.Marshal(dingtalk.NewText("from " + name))
		_, _ = w.Write(body)
	}
	return rec
}

func TestRoutingRecipe(t *testing.T) {
	t.Setenv("DINGTALK_APP_SECRET", testSecret)
	weather, ask := namedUpstream("weather"), namedUpstream("ask")
	defer weather.Close()
	defer ask.Close()
	g := startGateway(t, site{FilterSign: true, Body: routingRecipe(t, hostPort(weather.URL), hostPort(ask.URL))})

	const help = `{"msgtype":"markdown","markdown":{"title":"Help","text":"- **/weather** *city*: the weather\n- **/ask** *question*: ask the assistant"}}`
	cases := []struct {
		name     string
		callback dingtalktest.Callback
		want     string // the answer's body
		upstream *dingtalktest.Recorder
		arg      string // X-Command-Arg the upstream must see
	}{
		{"weather", dingtalktest.Callback{Text: "/weather Hangzhou"}, `{"msgtype":"text","text":{"content":"from weather"}}`, weather, "Hangzhou"},
		{"weather in a group, non-ASCII", dingtalktest.Callback{Text: "/weather  杭州 tomorrow", Group: true}, `{"msgtype":"text","text":{"content":"from weather"}}`, weather, "杭州"},
		{"ask", dingtalktest.Callback{Text: "/ask what is Caddy?"}, `{"msgtype":"text","text":{"content":"from ask"}}`, ask, ""},
		{"help", dingtalktest.Callback{Text: "help"}, help, nil, ""},
		{"help in a group", dingtalktest.Callback{Text: "help", Group: true}, help, nil, ""},
		{"default", dingtalktest.Callback{Text: "good morning", SenderNick: `Ann "the cat" \o/`},
			`{"msgtype":"text","text":{"content":"Sorry Ann \"the cat\" \\o/, I don't know \"good morning\""}}`, nil, ""},
		{"a command without its argument", dingtalktest.Callback{Text: "/weather", SenderNick: "Bo"},
			`{"msgtype":"text","text":{"content":"Sorry Bo, I don't know \"/weather\""}}`, nil, ""},
		{"not at the start", dingtalktest.Callback{Text: "please help", SenderNick: "Bo"},
			`{"msgtype":"text","text":{"content":"Sorry Bo, I don't know \"please help\""}}`, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := map[*dingtalktest.Recorder]int{weather: weather.Count(), ask: ask.Count()}
			body := c.callback.Body()
			resp := g.post("/robot", testSecret, body)

			if resp.Status != http.StatusOK || resp.Body != c.want {
				t.Fatalf("got %d %s\nwant 200 %s", resp.Status, resp.Body, c.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			for rec, n := range before {
				wantN := n
				if rec == c.upstream {
					wantN++
				}
				if got := rec.Count(); got != wantN {
					t.Errorf("upstream %s saw %d requests, want %d", rec.URL, got, wantN)
				}
			}
			if c.upstream == nil {
				return
			}
			got := c.upstream.Requests()
			last := got[len(got)-1]
			mustEqualBytes(t, "forwarded body", last.Body, body)
			if arg := last.Header.Get("X-Command-Arg"); arg != c.arg {
				t.Errorf("X-Command-Arg = %q, want %q", arg, c.arg)
			}
		})
	}

	// A forged help request is rejected before any matcher or reply.
	resp := g.post("/robot", "not the secret", dingtalktest.Callback{Text: "help"}.Body())
	if resp.Status != http.StatusUnauthorized || strings.Contains(resp.Body, "Help") {
		t.Errorf("forged request got %d %q, want 401 without the help reply", resp.Status, resp.Body)
	}
}

// dingtalk_reply answers only verified callbacks: without the dingtalk
// handler before it, it fails with 500 and says why in the log.
func TestReplyWithoutDingtalkHandlerFails(t *testing.T) {
	// The 500 is logged by Caddy with the request's headers: the site ships the sign filter.
	g := startGateway(t, site{FilterSign: true, Body: `
	route /robot {
		dingtalk_reply text "hi {http.dingtalk.sender_nick}"
	}`})

	resp := g.post("/robot", testSecret, callback("hello"))
	if resp.Status != http.StatusInternalServerError || strings.Contains(resp.Body, "msgtype") {
		t.Fatalf("got %d %q, want 500 without a reply", resp.Status, resp.Body)
	}
	if !strings.Contains(g.logs(), "dingtalk_reply reached without a verified DingTalk callback") {
		t.Error("the log does not say why the reply failed")
	}
}

// Placeholders other than {http.dingtalk.*} carry raw request data too: a
// header with invalid UTF-8 still gives valid JSON, and each value is
// exactly what was sent.
func TestReplyIsValidJSONWhateverThePlaceholdersHold(t *testing.T) {
	g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
		}
		dingtalk_reply markdown "{http.request.header.X-Title}" "{http.dingtalk.text}|{http.request.header.X-Note}" {
			at_sender
		}
	}`, testSecret)})

	text := "line 1\nline \"2\" \\ </script> 😀"
	body := dingtalktest.Callback{Text: text, SenderStaffID: `staff"1`}.Body()
	resp := g.post("/robot", testSecret, body, func(r *http.Request) {
		r.Header.Set("X-Title", `{"msgtype":"empty"}`)
		r.Header.Set("X-Note", "bad \xff byte")
	})
	if resp.Status != http.StatusOK || !json.Valid([]byte(resp.Body)) {
		t.Fatalf("got %d %q, want 200 and valid JSON", resp.Status, resp.Body)
	}
	var got dingtalk.OutgoingMessage
	if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
		t.Fatal(err)
	}
	want := dingtalk.NewMarkdown(`{"msgtype":"empty"}`, text+"|bad \uFFFD byte @staff\"1")
	want.At = &dingtalk.At{AtUserIDs: []string{`staff"1`}}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(&got)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("decoded reply:\n got %s\nwant %s", gotJSON, wantJSON)
	}
}
