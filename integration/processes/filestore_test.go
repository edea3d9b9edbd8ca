package processes

import (
	"fmt"
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
// restarted gateway once the dead holder's lease lapsed; once answered, a
// redelivery after a second crash is a duplicate.
func TestSyncFileKilledHolderLetsTheRedeliveryThrough(t *testing.T) {
	be := newBackend(t)
	release := be.holdCalls()
	gw := startInstance(t, "gateway", gatewaySite(be, fileStore, ""))
	msg := dingtalktest.NewMsgID()
	body := dingtalktest.Callback{Text: "hello", MsgID: msg}.Body()

	go gw.deliver(body) //nolint:errcheck // the gateway dies before it answers
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	gw.kill()
	killed := time.Now()
	release()
	gw.start()

	var status int
	var answer string
	waitFor(t, "a redelivery to be answered by the backend", func() bool {
		time.Sleep(100 * time.Millisecond) // DingTalk's redeliveries are spaced too
		var err error
		status, answer, err = gw.deliver(body)
		return err != nil || answer != emptyAnswer
	})
	if status != http.StatusOK || answer != "re:"+msg {
		t.Fatalf("the redelivery was answered %d %q, want 200 re:%s", status, answer, msg)
	}
	if took := time.Since(killed); took > lease+10*time.Second {
		t.Fatalf("the redelivery went through %v after the crash, want within the lease + 10s", took)
	}

	gw.kill()
	gw.start()
	if _, answer, err := gw.deliver(body); err != nil || answer != emptyAnswer {
		t.Fatalf("a redelivery of the answered message after a second crash was answered %q (%v), want the empty reply", answer, err)
	}
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2 (the crashed call and the redelivery)", n)
	}
}

// A sync message in flight when the gateway is told to stop, and whose
// backend then fails, is let go before the gateway exits: its redelivery to
// the next start is processed at once, not held by a lease left behind.
func TestSyncFileStopLeavesNothingClaimed(t *testing.T) {
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
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	gw := startInstance(t, "gateway", gatewaySite(be, fileStore, asyncBlock(wh, "")))
	msg := dingtalktest.NewMsgID()

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	gw.kill()
	killed := time.Now()
	release()
	gw.start()

	waitFor(t, "the restarted gateway to post the answer", func() bool { return wh.posts("re:"+msg) == 1 })
	if took := time.Since(killed); took > lease+10*time.Second {
		t.Fatalf("answered %v after the crash, want within the lease + 10s", took)
	}
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2", n)
	}
	if n := gw.logged("dingtalk async job taken over"); n != 1 {
		t.Fatalf("%d lines say a job was taken over, want 1", n)
	}

	gw.kill()
	gw.start()
	gw.mustAck(wh.callback(msg))
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("after the redelivery the backend got the message %d times, want still 2", n)
	}
}

// A stop during a job that finishes within the drain posts its answer
// before the gateway exits; the next start has nothing left to run.
func TestAsyncFileStopDrainsTheRunningJob(t *testing.T) {
	be, wh := newBackend(t), newWebhook(t)
	const job, drain = 2 * time.Second, 10 * time.Second
	gw := startInstance(t, "gateway", gatewaySite(be, fileStore, asyncBlock(wh, fmt.Sprintf("drain %v", drain))))
	msg := dingtalktest.NewMsgID()
	be.slow(msg, job)

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	gw.stop(drain + 5*time.Second)
	if n := wh.posts("re:" + msg); n != 1 {
		t.Fatalf("%d posts when the stopped gateway exited, want 1", n)
	}

	gw.start()
	gw.mustAck(wh.callback(msg)) // a redelivery after the deploy
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 1 {
		t.Fatalf("the backend got the message %d times, want once", n)
	}
}

// A stop during a job longer than the drain hands the job back in the
// file; the next start runs it and posts once.
func TestAsyncFileStopHandsBackAJobLongerThanTheDrain(t *testing.T) {
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	const drain = time.Second
	gw := startInstance(t, "gateway", gatewaySite(be, fileStore, asyncBlock(wh, fmt.Sprintf("drain %v", drain))))
	msg := dingtalktest.NewMsgID()

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	if took := gw.stop(drain + 5*time.Second); took < drain {
		t.Fatalf("the gateway exited %v after SIGTERM, before the drain of %v", took, drain)
	}
	if n := gw.logged("dingtalk async job handed back"); n != 1 {
		t.Fatalf("%d lines say the job was handed back, want 1", n)
	}
	if n := wh.posts("re:" + msg); n != 0 {
		t.Fatalf("%d posts before the job could finish", n)
	}

	release()
	gw.start()
	waitFor(t, "the next start to post the answer", func() bool { return wh.posts("re:"+msg) == 1 })
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2", n)
	}
}
