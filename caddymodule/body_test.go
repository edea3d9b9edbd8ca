package caddymodule

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// onlyReader hides a reader's other methods, as a chunked body does.
type onlyReader struct{ io.Reader }

func TestReadBody(t *testing.T) {
	const limit = 1000
	cases := []struct {
		name          string
		body          string
		contentLength int64 // -1: unknown, as for a chunked body
		tooLarge      bool
	}{
		{"announced", strings.Repeat("a", 700), 700, false},
		{"announced, at the limit", strings.Repeat("a", limit), limit, false},
		{"announced over the limit", strings.Repeat("a", limit+1), limit + 1, true},
		{"empty", "", 0, false},
		{"unknown length, grows past the first buffer", strings.Repeat("b", 900), -1, false},
		{"unknown length, at the limit", strings.Repeat("b", limit), -1, false},
		{"unknown length, over the limit", strings.Repeat("b", 5*limit), -1, true},
		{"longer than announced", strings.Repeat("c", 800), 10, false},
		{"longer than announced, over the limit", strings.Repeat("c", limit+1), 10, true},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/", nil)
		r.Body = io.NopCloser(onlyReader{strings.NewReader(c.body)})
		r.ContentLength = c.contentLength
		got, err := readBody(r, limit)
		switch {
		case c.tooLarge && !errors.Is(err, errBodyTooLarge):
			t.Errorf("%s: error %v, want errBodyTooLarge", c.name, err)
		case !c.tooLarge && (err != nil || got != c.body):
			t.Errorf("%s: read %d bytes, %v; want the %d bytes sent", c.name, len(got), err, len(c.body))
		}
	}
}

func TestRestoreBodyKeepsOrFixesContentLength(t *testing.T) {
	const body = `{"msgtype":"text"}`
	for _, sent := range [][]string{{"18"}, nil, {"5"}, {"18", "18"}} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header["Content-Length"] = sent
		r.TransferEncoding = []string{"chunked"}
		restoreBody(r, body, new(bodyReader))
		again, _ := r.GetBody()
		first, _ := io.ReadAll(r.Body)
		second, _ := io.ReadAll(again)
		if got := r.Header["Content-Length"]; len(got) != 1 || got[0] != "18" || r.ContentLength != 18 || r.TransferEncoding != nil {
			t.Errorf("sent %q: Content-Length %q, %d, transfer encoding %q", sent, got, r.ContentLength, r.TransferEncoding)
		}
		if string(first) != body || string(second) != body {
			t.Errorf("sent %q: body %q, GetBody %q", sent, first, second)
		}
	}
}

// meteredBody is an endless request body that counts what is read of it.
type meteredBody struct{ read int64 }

func (b *meteredBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	b.read += int64(len(p))
	return len(p), nil
}

func (*meteredBody) Close() error { return nil }

// However long a body, the handler reads at most one byte past max_body
// of it before answering 413: announced without a length (chunked) or with
// a length that lies.
func TestBodyReadStopsOneBytePastMaxBody(t *testing.T) {
	const limit = 2048
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, MaxBody: limit})
	for name, length := range map[string]int64{"chunked": -1, "lying Content-Length": 100} {
		req := signedAt(t, testSecret, fixedNow, nil)
		body := new(meteredBody)
		req.Body, req.ContentLength = body, length
		req.Header.Del("Content-Length")
		if length >= 0 {
			req.Header.Set("Content-Length", strconv.FormatInt(length, 10))
		}
		if got := serve(h, req); got.status != http.StatusRequestEntityTooLarge || got.reached != nil {
			t.Errorf("%s: got %d %q (reached next: %v), want 413", name, got.status, got.reason, got.reached != nil)
		}
		if body.read > limit+1 {
			t.Errorf("%s: %d bytes of the body were read, want at most max_body + 1 = %d", name, body.read, limit+1)
		}
	}
}

// max_body from JSON is bounded: a limit near the int64 range overflowed
// the reader's limit+1 and panicked on every callback. dingtalk_event
// reads its bodies the same way.
func TestMaxBodyIsBounded(t *testing.T) {
	if err := (&EventHandler{MaxBody: math.MaxInt64}).Validate(); err == nil {
		t.Error("dingtalk_event validated max_body 9223372036854775807")
	}
	for _, c := range []struct {
		maxBody string
		valid   bool
	}{
		{"9223372036854775807", false},
		{"1073741825", false}, // 1GiB + 1
		{"1073741824", true},
	} {
		var h Handler
		config := `{"bots":[{"name":"default","secret":"` + testSecret + `"}],"max_body":` + c.maxBody + `}`
		if err := json.Unmarshal([]byte(config), &h); err != nil {
			t.Fatal(err)
		}
		h.now = func() time.Time { return fixedNow }
		if err := h.Provision(newTestConfig(t)); err != nil {
			t.Fatal(err)
		}
		err := h.Validate()
		if (err == nil) != c.valid {
			t.Errorf("max_body %s: Validate() = %v, want valid: %v", c.maxBody, err, c.valid)
		}
		if err == nil {
			if got := serve(&h, signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi"}.Body())); got.reached == nil {
				t.Errorf("max_body %s: a callback got %d %q", c.maxBody, got.status, got.reason)
			}
		}
	}
}
