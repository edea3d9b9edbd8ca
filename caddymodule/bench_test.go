package caddymodule

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// Benchmarks of the request path. Each loop reuses what Caddy would have
// made before our code runs (the request, its replacer, the response
// writer), so that allocs/op counts our allocations only; BENCHMARKS.md
// explains how to read them.

// reportCPU adds the metric cpu-ns/op: the process's CPU time (the GC's
// included) per iteration from now until the returned function is called
// after the loop. Unlike ns/op it does not grow while the benchmark waits
// for a CPU that other programs hold, so it is the number to compare on a
// shared machine.
func reportCPU(b *testing.B) (stop func()) {
	start, ok := processCPU()
	return func() {
		if end, ok2 := processCPU(); ok && ok2 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// benchMsgID is a msgId whose last benchIDDigits characters the benchmark
// rewrites in place, so that every iteration sends a new message.
const (
	benchMsgID    = "msgBench000000000000"
	benchIDDigits = 12
)

// BenchmarkServeHTTPAccepted runs the dingtalk handler on an accepted group
// text callback, up to the next handler (which does nothing): verify the
// sign, read and parse the body, claim the msgId in the default memory
// store, expose the message. Every iteration has a new msgId, so the store
// inserts. One of the allocations is the body's buffer.
func BenchmarkServeHTTPAccepted(b *testing.B) {
	h := newTestHandler(b, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	body := dingtalktest.Callback{Text: "hello robot", Group: true, MsgID: benchMsgID, Now: fixedNow}.Body()
	idEnd := bytes.Index(body, []byte(benchMsgID)) + len(benchMsgID)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	req, repl := benchRequest(b, body)
	fresh := *repl
	w := newDiscardWriter()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var n uint64
	defer reportCPU(b)()
	for b.Loop() {
		n++
		setCounter(body[idEnd-benchIDDigits:idEnd], n)
		req.reset(body)
		*repl = fresh // what Caddy's replacer holds before the handler runs
		if err := h.ServeHTTP(w, req.Request, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplyText builds and writes the root Caddyfile's reply: a text
// with a placeholder, @-mentioning the sender.
func BenchmarkReplyText(b *testing.B) {
	rh := &Reply{Type: "text", Text: "You said: {http.dingtalk.text}", AtSender: true}
	if err := rh.Validate(); err != nil {
		b.Fatal(err)
	}
	r, _ := verifiedRequest(b, "default", dingtalktest.Callback{Text: "hello robot", Group: true}.Body())
	w := newDiscardWriter()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if err := rh.ServeHTTP(w, r, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatcher matches a command by the text's regular expression, with
// a capture, and the conversation type.
func BenchmarkMatcher(b *testing.B) {
	m := parseMatcher(b, "weather", `{
		text ^/weather\s+(\S+)
		conversation group
	}`)
	r, _ := verifiedRequest(b, "default", dingtalktest.Callback{Text: "/weather Hangzhou", Group: true}.Body())
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if ok, err := m.MatchWithError(r); !ok || err != nil {
			b.Fatal("no match", err)
		}
	}
}

// reusableRequest is a signed request that a benchmark can send again and
// again without allocating: its body reader is rewound in place.
type reusableRequest struct {
	*http.Request
	body *rewindBody
}

type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchRequest returns a request signed for body, with a replacer in its
// context as Caddy gives it to the first handler.
func benchRequest(b *testing.B, body []byte) (*reusableRequest, *caddy.Replacer) {
	req := signedAt(b, testSecret, fixedNow, body)
	repl := caddy.NewReplacer()
	// Caddy maps its own {http.*} placeholders before any handler runs,
	// which leaves room in the replacer for ours.
	repl.Map(func(string) (any, bool) { return nil, false })
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	return &reusableRequest{Request: req, body: new(rewindBody)}, repl
}

// reset gives the request body again, as a new request would carry it.
func (r *reusableRequest) reset(body []byte) {
	r.body.Reset(body)
	r.Body = r.body
	r.ContentLength = int64(len(body))
}

// setCounter writes n in decimal into digits, right-aligned with zeros.
func setCounter(digits []byte, n uint64) {
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
}

// discardWriter is a response writer that keeps nothing but its header map.
type discardWriter struct{ header http.Header }

func newDiscardWriter() *discardWriter { return &discardWriter{header: make(http.Header)} }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
