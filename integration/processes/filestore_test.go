package processes

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The file store's crash and deploy tests: one instance, killed or stopped
// and started again on its own file, as a single gateway without Redis is.

// fileStore is the store block of the file in the instance's data folder
// (the default path), which the instance keeps across its restarts.
const fileStore = "store file"

const emptyAnswer = `{"msgtype":"empty"}`

// A sync message whose holder was killed is processed on a redelivery to the
// restarted gateway (at once: the file store keeps no lease of a process
// that ended); once answered, a redelivery after a second crash is a
// duplicate.
func TestSyncFileKilledHolderLetsTheRedeliveryThrough(t *testing.T) {
	t.Parallel()
	gw, body, _ := killedSyncHolderLetsTheRedeliveryThrough(t, fileStore)
	gw.kill()
	gw.start()
	if _, answer, err := gw.deliver(body); err != nil || answer != emptyAnswer {
		t.Fatalf("a redelivery of the answered message after a second crash was answered %q (%v), want the empty reply", answer, err)
	}
}

// A sync message in flight when the gateway is told to stop, and whose
// backend then fails, is let go before the gateway exits: its redelivery to
// the next start is processed at once, not held by a lease left behind.
func TestSyncFileStopLeavesNothingClaimed(t *testing.T) {
	t.Parallel()
	be := newBackend(t)
	answer := be.Handler
	fail := make(chan struct{})
	var calls atomic.Int32
	be.Handler = func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 { // the first call fails, once the gateway is stopping
			<-fail
			http.Error(w, "backend failed", http.StatusInternalServerError)
			return
		}
		answer(w, r)
	}
	gw := startInstance(t, "gateway", gatewaySite(be, fileStore, ""))
	msg := dingtalktest.NewMsgID()
	body := dingtalktest.Callback{Text: "hello", MsgID: msg}.Body()

	inFlight := make(chan int, 1)
	go func() {
		status, _, _ := gw.deliver(body)
		inFlight <- status
	}()
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	go func() {
		// Caddy closes its listener at SIGTERM and waits for the request.
		addr := strings.TrimPrefix(gw.URL, "http://")
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				close(fail)
				return
			}
			conn.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	gw.stop(deadline)
	if status := <-inFlight; status != http.StatusInternalServerError {
		t.Fatalf("the request in flight was answered %d, want the backend's 500", status)
	}

	gw.start()
	if status, answer, err := gw.deliver(body); err != nil || status != http.StatusOK || answer != "re:"+msg {
		t.Fatalf("the redelivery after the stop was answered %d %q (%v), want 200 re:%s at once", status, answer, err, msg)
	}
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2", n)
	}
}

// An async job whose gateway is killed is resumed by the restarted gateway
// from the file: posted once. A redelivery of the answered message after
// another crash runs nothing.
func TestAsyncFileKilledJobIsResumedAfterRestart(t *testing.T) {
	t.Parallel()
	gw, be, wh, msg := killedJobIsResumedAfterRestart(t, fileStore)
	gw.kill()
	gw.start()
	gw.mustAck(wh.callback(msg))
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("after the redelivery the backend got the message %d times, want still 2", n)
	}
}

func TestAsyncFileStopDrainsTheRunningJob(t *testing.T) {
	t.Parallel()
	stopDrainsTheRunningJob(t, fileStore, func(string) {})
}

func TestAsyncFileStopHandsBackAJobLongerThanTheDrain(t *testing.T) {
	t.Parallel()
	stopHandsBackAJobLongerThanTheDrain(t, fileStore, func(string) {})
}
