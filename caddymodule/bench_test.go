package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// Benchmarks of the request path. Each loop reuses what Caddy would have
// made before our code runs (the request, its replacer, the response
// writer), so that allocs/op counts our allocations only; BENCHMARKS.md
// explains how to read them.

// reportCPU adds the metric cpu-ns/op: the process's CPU time (the GC's
// included) per iteration from now until the returned function is called
// after the loop, less *excluded (work done with the timer stopped), if
// given. Unlike ns/op it does not grow while the benchmark waits for a CPU
// that other programs hold, so it is the number to compare on a shared
// machine.
func reportCPU(b *testing.B, excluded *time.Duration) (stop func()) {
	start, ok := processCPU()
	return func() {
		end, ok2 := processCPU()
		if !ok || !ok2 || b.N == 0 {
			return
		}
		if excluded != nil {
			end -= *excluded
		}
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
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
// sign, read and parse the body, check the replay guard and claim the msgId
// in the default memory store, count it, expose the message. Every
// iteration has a new msgId and a new timestamp and sign, so both claims
// insert. One of the allocations is the body's buffer. "quiet" is Caddy
// logging warnings and errors only; "logged" is Caddy's default level,
// INFO, at which the handler writes a JSON line (here to io.Discard) for
// every accepted callback.
func BenchmarkServeHTTPAccepted(b *testing.B) {
	b.Run("quiet", func(b *testing.B) { benchmarkAccepted(b, zap.NewNop(), nil) })
	b.Run("logged", func(b *testing.B) {
		encoder := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		benchmarkAccepted(b, zap.New(zapcore.NewCore(encoder, zapcore.AddSync(io.Discard), zapcore.InfoLevel)), nil)
	})
}

// BenchmarkServeHTTPAcceptedStores is BenchmarkServeHTTPAccepted/quiet
// with each store that keeps its memory on this machine. The file store
// writes the callback's claims (the sign's and the msgId's) to its file,
// each alone: no other callback runs beside this one to share a commit.
func BenchmarkServeHTTPAcceptedStores(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchmarkAccepted(b, zap.NewNop(), nil) })
	b.Run("file", func(b *testing.B) {
		store := fmt.Sprintf(`{"backend":"file","path":%q}`, filepath.Join(b.TempDir(), "store.db"))
		benchmarkAccepted(b, zap.NewNop(), json.RawMessage(store))
	})
}

func benchmarkAccepted(b *testing.B, logger *zap.Logger, store json.RawMessage) {
	h := newTestHandler(b, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, StoreRaw: store})
	h.logger, h.report.logger = logger, logger
	times := &signedTimes{b: b, next: fixedNow}
	var now time.Time
	h.now = func() time.Time { return now }
	body := dingtalktest.Callback{Text: "hello robot", Group: true, MsgID: benchMsgID, Now: fixedNow}.Body()
	idEnd := bytes.Index(body, []byte(benchMsgID)) + len(benchMsgID)
	// The next handler counts the callbacks it is given: a handler that
	// answered them otherwise (as duplicates, say) must not look faster.
	var reached uint64
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		reached++
		return nil
	})
	req, repl := benchRequest(b, body)
	fresh := *repl
	w := newDiscardWriter()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var n uint64
	defer reportCPU(b, &times.excluded)()
	for b.Loop() {
		n++
		setCounter(body[idEnd-benchIDDigits:idEnd], n)
		now = times.sign(req.Header)
		req.reset(body)
		*repl = fresh // what Caddy's replacer holds before the handler runs
		if err := h.ServeHTTP(w, req.Request, next); err != nil {
			b.Fatal(err)
		}
	}
	if reached != n {
		b.Fatalf("%d of %d callbacks reached the next handler", reached, n)
	}
}

// signedTimes gives each iteration a timestamp of its own, a millisecond
// after the previous one, and its sign, as DingTalk signs every callback at
// its own time. The signs are computed in batches with the timer stopped;
// excluded is the CPU time that took.
type signedTimes struct {
	b          *testing.B
	next       time.Time
	ts, signs  []string
	excluded   time.Duration
	batchStart time.Time
}

// sign sets the next timestamp and its sign in h, whose headers hold one
// value each already, and returns the time of the timestamp.
func (s *signedTimes) sign(h http.Header) time.Time {
	if len(s.ts) == 0 {
		s.b.StopTimer()
		start, _ := processCPU()
		s.batchStart = s.next
		for range 4096 {
			ts := strconv.FormatInt(s.next.UnixMilli(), 10)
			s.ts, s.signs = append(s.ts, ts), append(s.signs, dingtalk.Sign(testSecret, ts))
			s.next = s.next.Add(time.Millisecond)
		}
		// Collect the batch's garbage now, with the timer stopped: signing
		// allocates more than the handler does, and would otherwise make
		// the timed loop pay for garbage collections that are not its own.
		runtime.GC()
		end, _ := processCPU()
		s.excluded += end - start
		s.b.StartTimer()
	}
	h[timestampKey][0], h[signKey][0] = s.ts[0], s.signs[0]
	s.ts, s.signs = s.ts[1:], s.signs[1:]
	at := s.batchStart
	s.batchStart = s.batchStart.Add(time.Millisecond)
	return at
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
	defer reportCPU(b, nil)()
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
	defer reportCPU(b, nil)()
	for b.Loop() {
		if ok, err := m.MatchWithError(r); !ok || err != nil {
			b.Fatal("no match", err)
		}
	}
}

// reusableRequest is a signed request that a benchmark can send again and
// again without allocating: its body reader is rewound in place, and its
// variables are cleared of what the handler left in them.
type reusableRequest struct {
	*http.Request
	body *rewindBody
	vars map[string]any
}

type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchRequest returns a request signed for body, prepared as Caddy gives
// it to the first handler.
func benchRequest(b *testing.B, body []byte) (*reusableRequest, *caddy.Replacer) {
	req, repl := caddyRequest(signedAt(b, testSecret, fixedNow, body))
	vars := req.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	return &reusableRequest{Request: req, body: new(rewindBody), vars: vars}, repl
}

// reset gives the request body again, and the variables a new request has.
func (r *reusableRequest) reset(body []byte) {
	r.body.Reset(body)
	r.Body = r.body
	r.ContentLength = int64(len(body))
	delete(r.vars, verifiedVar)
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
