package caddymodule

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
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
