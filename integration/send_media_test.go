package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// internalSite is a robot in a dingtalk handler and, beside it, the
// internal doors extra (dingtalk_send, dingtalk_media routes).
func internalSite(api *dingtalktest.OpenAPI, bot, extra string) site {
	return site{FilterSign: true, Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			bot %s %q {
				app_key %s
			}
			api_base %s
		}
		dingtalk_reply text "hi"
	}
	%s`, bot, apiSecret, apiAppKey, api.URL, extra)}
}

// request sends a request with method and body to g's path, with the
// basic auth user and password when user is not empty.
func (g *gateway) request(method, path, body, user, password string) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.URL+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	req.Header.Set("Content-Type", "application/json")
	return g.do(req)
}

// opsPasswordHash is "ops password" hashed with bcrypt at its lowest cost,
// so that the test does not spend a second per request on checking it.
const opsPasswordHash = "$2a$04$yGoIpgy5yYEL6H59W5KGGOIbfubp2Jv9VEUcZTB03yv6ewid.ZRDW"

func TestSendAnswersEachKindOfRequest(t *testing.T) {
	api := newFakeOpenAPI(t)
	// /notify is the README's recipe: behind basic_auth, as the notify bot.
	// /slow has a robot of its own, at one call a second.
	g := startGateway(t, internalSite(api, "notify-bot", fmt.Sprintf(`
	route /notify {
		basic_auth {
			ops %s
		}
		dingtalk_send {
			bot notify-bot
		}
	}
	route /slow {
		dingtalk_send {
			secret %q
			app_key %s
			api_base %s
			api_rate 1
		}
	}`, opsPasswordHash, apiSecret, apiAppKey, api.URL)))
	post := func(path, body string) response {
		return g.request(http.MethodPost, path, body, "ops", "ops password")
	}

	if resp := g.request(http.MethodPost, "/notify", `{"conversation_id":"cidGroup123==","text":"x"}`, "", ""); resp.Status != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", resp.Status)
	}
	resp := post("/notify", `{"conversation_id":"cidGroup123==","text":"deploy finished"}`)
	if resp.Status != http.StatusOK || !strings.Contains(resp.Body, `"processQueryKey":"fake-process-1"`) {
		t.Fatalf("a text to a group: %d %s", resp.Status, resp.Body)
	}
	resp = post("/notify", `{"user_ids":["user123","user456"],"message":{"msgtype":"markdown","markdown":{"title":"Alert","text":"**disk** full"}}}`)
	if resp.Status != http.StatusOK {
		t.Fatalf("a markdown to two users: %d %s", resp.Status, resp.Body)
	}
	sent := api.Sent()
	if len(sent) != 2 || sent[0].ConversationID != "cidGroup123==" || sent[0].MsgKey != "sampleText" || sent[0].Param["content"] != "deploy finished" ||
		!slices.Equal(sent[1].UserIDs, []string{"user123", "user456"}) || sent[1].MsgKey != "sampleMarkdown" || sent[1].Param["text"] != "**disk** full" {
		t.Fatalf("DingTalk got %+v", sent)
	}

	for name, body := range map[string]string{
		"not JSON":        `conversation_id=cid`,
		"no target":       `{"text":"x"}`,
		"two targets":     `{"conversation_id":"cid","user_ids":["u"],"text":"x"}`,
		"no message":      `{"conversation_id":"cid"}`,
		"two messages":    `{"conversation_id":"cid","text":"x","message":{"msgtype":"text","text":{"content":"y"}}}`,
		"unknown field":   `{"conversationId":"cid","text":"x"}`,
		"too many users":  `{"user_ids":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17","18","19","20","21"],"text":"x"}`,
		"unknown msgtype": `{"conversation_id":"cid","message":{"msgtype":"image","image":{}}}`,
		"empty message":   `{"conversation_id":"cid","message":{"msgtype":"empty"}}`,
	} {
		if resp := post("/notify", body); resp.Status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, resp.Status)
		}
	}
	if resp := g.request(http.MethodGet, "/notify", "", "ops", "ops password"); resp.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.Status)
	}
	if n := len(api.Sent()); n != 2 {
		t.Fatalf("bad requests reached DingTalk: %d messages sent, want 2", n)
	}

	// DingTalk's own refusals.
	for _, tc := range []struct {
		failure dingtalktest.Failure
		status  int
	}{
		{dingtalktest.FailBadParameter, http.StatusBadRequest},
		{dingtalktest.FailQuota, http.StatusBadGateway},
		{dingtalktest.FailServer, http.StatusBadGateway},
	} {
		api.Fail(dingtalktest.OpenAPIGroupSendPath, tc.failure, 1)
		if resp := post("/notify", `{"conversation_id":"cidGroup123==","text":"x"}`); resp.Status != tc.status {
			t.Errorf("DingTalk answering %s: %d, want %d", tc.failure.Code, resp.Status, tc.status)
		}
	}

	// Over the budget: the second message within a second is refused
	// without reaching DingTalk.
	if resp := post("/slow", `{"conversation_id":"cidGroup123==","text":"first"}`); resp.Status != http.StatusOK {
		t.Fatalf("first message of /slow: %d %s", resp.Status, resp.Body)
	}
	calls := len(api.Calls(dingtalktest.OpenAPIGroupSendPath))
	resp = post("/slow", `{"conversation_id":"cidGroup123==","text":"second"}`)
	if resp.Status != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("second message of /slow: %d, Retry-After %q; want 429, 2", resp.Status, resp.Header.Get("Retry-After"))
	}
	if n := len(api.Calls(dingtalktest.OpenAPIGroupSendPath)); n != calls {
		t.Fatalf("a message over the budget reached DingTalk")
	}
}

func TestMediaRedirectsOrProxiesWithASizeCap(t *testing.T) {
	api := newFakeOpenAPI(t)
	picture := []byte("\x89PNG picture bytes")
	api.AddMedia("dcPic==", dingtalktest.Media{ContentType: "image/png", Body: picture})
	api.AddMedia("dc/with+slash==", dingtalktest.Media{ContentType: "image/jpeg", Body: []byte("jpeg")})
	api.AddMedia("dcBig==", dingtalktest.Media{ContentType: "video/mp4", Body: make([]byte, 2048)})
	g := startGateway(t, internalSite(api, "media-bot", `
	route /media/* {
		uri strip_prefix /media
		dingtalk_media
	}
	route /proxy/* {
		uri strip_prefix /proxy
		dingtalk_media {
			bot media-bot
			mode proxy
			max_size 1KiB
		}
	}`))
	noRedirects := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirects.Get(g.URL + "/media/dcPic==")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	location := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(location, api.URL+dingtalktest.OpenAPIMediaPath) {
		t.Fatalf("redirect mode: %d to %q", resp.StatusCode, location)
	}
	if got := get(t, location); got != string(picture) {
		t.Fatalf("the redirect leads to %q", got)
	}

	for path, want := range map[string]string{
		"/proxy/dcPic==": string(picture),
		"/proxy/" + url.PathEscape("dc/with+slash=="): "jpeg",
	} {
		resp := g.request(http.MethodGet, path, "", "", "")
		if resp.Status != http.StatusOK || resp.Body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, resp.Status, resp.Body, want)
		}
	}
	if resp := g.request(http.MethodGet, "/proxy/dcPic==", "", "", ""); resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("proxy mode: Content-Type %q", resp.Header.Get("Content-Type"))
	}
	if resp := g.request(http.MethodGet, "/proxy/dcBig==", "", "", ""); resp.Status != http.StatusBadGateway {
		t.Errorf("a file over max_size: %d, want 502", resp.Status)
	}
	if resp := g.request(http.MethodGet, "/media/unknown==", "", "", ""); resp.Status != http.StatusNotFound {
		t.Errorf("an unknown code: %d, want 404", resp.Status)
	}
	if resp := g.request(http.MethodPost, "/media/dcPic==", "", "", ""); resp.Status != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.Status)
	}
}

// get fetches url and returns its body.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
