package dingtalktest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Received is one request a fake server saw.
type Received struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time // when it arrived
}

// Recorder is an HTTP server on loopback that records every request and
// answers with its Handler (default: 200 with an empty DingTalk reply).
type Recorder struct {
	*httptest.Server

	mu       sync.Mutex
	received []Received
	notify   chan struct{}

	// Handler answers after the request was recorded; set it before use.
	Handler http.HandlerFunc
}

// NewRecorder starts a recording server on 127.0.0.1.
func NewRecorder() *Recorder {
	return startRecorder(httptest.NewUnstartedServer(nil), nil)
}

// startRecorder serves srv with a new Recorder answering with handler.
// The handler is set before the server starts, so no request can race it.
func startRecorder(srv *httptest.Server, handler http.HandlerFunc) *Recorder {
	rec := &Recorder{notify: make(chan struct{}, 1024), Handler: handler}
	srv.Config.Handler = http.HandlerFunc(rec.serve)
	rec.Server = srv
	srv.Start()
	return rec
}

func (rec *Recorder) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.received = append(rec.received, Received{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body, At: time.Now()})
	rec.mu.Unlock()
	select {
	case rec.notify <- struct{}{}:
	default:
	}
	if rec.Handler != nil {
		r.Body = io.NopCloser(bytes.NewReader(body)) // the handler may read it too
		rec.Handler(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = io.WriteString(w, `{"msgtype":"empty"}`)
}

// Requests returns a copy of what was received so far.
func (rec *Recorder) Requests() []Received {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Received(nil), rec.received...)
}

// Count returns how many requests were received.
func (rec *Recorder) Count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.received)
}

// Notify receives a value (best effort) after each recorded request.
func (rec *Recorder) Notify() <-chan struct{} { return rec.notify }
