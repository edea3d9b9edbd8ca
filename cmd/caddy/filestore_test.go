package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The crash tests of the file store: Caddy as a real process, killed and
// started again on the same file, in front of a loopback backend that
// counts its calls.

const emptyAnswer = `{"msgtype":"empty"}`

// fileStoreSite passes genuine callbacks to backend, remembering in a file in dir.
func fileStoreSite(dir string, backend *dingtalktest.Recorder) string {
	return fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			store file {
				path %s
			}
		}
		reverse_proxy %s
	}`, testSecret, filepath.Join(dir, "store.db"), strings.TrimPrefix(backend.URL, "http://"))
}

// answering is a backend that answers every callback with a text.
func answering(t *testing.T) *dingtalktest.Recorder {
	backend := dingtalktest.NewRecorder()
	t.Cleanup(backend.Close)
	backend.Handler = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"msgtype":"text","text":{"content":"pong"}}`)
	}
	return backend
}

// A message answered just before Caddy is killed is still answered: its
// redelivery to the restarted Caddy is a duplicate, answered empty, and the
// backend is not called again.
func TestFileStoreRedeliveryAfterACrashIsADuplicate(t *testing.T) {
	dir := t.TempDir()
	backend := answering(t)
	site := fileStoreSite(dir, backend)
	first := startCaddy(t, dir, site)
	msg := dingtalktest.Callback{Text: "ping", Group: true}.Body()
	if status, answer := first.deliver(t, msg); status != http.StatusOK || !strings.Contains(answer, "pong") {
		t.Fatalf("first delivery: %d %s", status, answer)
	}
	first.kill(t)

	again := startCaddy(t, dir, site)
	if status, answer := again.deliver(t, msg); status != http.StatusOK || answer != emptyAnswer {
		t.Fatalf("the redelivery after the crash: %d %s, want 200 %s", status, answer, emptyAnswer)
	}
	// The restarted Caddy passes a new message on: the backend is reachable.
	if status, answer := again.deliver(t, dingtalktest.Callback{Text: "new", Group: true}.Body()); status != http.StatusOK || !strings.Contains(answer, "pong") {
		t.Fatalf("a new message after the crash: %d %s", status, answer)
	}
	if n := backend.Count(); n != 2 {
		t.Fatalf("the backend was called %d times, want 2: the first message once, the new one once", n)
	}
}

// A message in flight when Caddy is told to stop, and whose backend then
// fails, is let go before Caddy exits: its redelivery to the next Caddy is
// processed at once, not answered empty as a message still claimed.
func TestFileStoreStopLeavesNothingClaimed(t *testing.T) {
	dir := t.TempDir()
	called := make(chan struct{}, 1)
	fail := make(chan struct{})
	backend := answering(t)
	pong := backend.Handler
	backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		if backend.Count() == 1 { // the first call waits, then fails
			called <- struct{}{}
			<-fail
			http.Error(w, "backend failed", http.StatusInternalServerError)
			return
		}
		pong(w, r)
	}
	site := fileStoreSite(dir, backend)
	first := startCaddy(t, dir, site)
	msg := dingtalktest.Callback{Text: "ping", Group: true}.Body()
	answered := make(chan int, 1)
	go func() {
		status, _, err := first.send(msg)
		if err != nil {
			t.Error(err)
		}
		answered <- status
	}()
	<-called
	first.terminate(t) // Caddy lets the request in flight finish
	close(fail)
	if status := <-answered; status != http.StatusInternalServerError {
		t.Fatalf("the request in flight was answered %d, want the backend's 500", status)
	}
	first.waitExit(t)

	again := startCaddy(t, dir, site)
	if status, answer := again.deliver(t, msg); status != http.StatusOK || !strings.Contains(answer, "pong") {
		t.Fatalf("the redelivery after the stop: %d %s, want the backend's answer", status, answer)
	}
	if n := backend.Count(); n != 2 {
		t.Fatalf("the backend was called %d times, want 2", n)
	}
}
