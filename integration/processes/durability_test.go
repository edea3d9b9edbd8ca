package processes

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// lease is the tests' lease: short, so that a dead holder's message is
// taken over in seconds. Every "within" below is lease plus the issue's
// allowance of 10 s.
const lease = 2 * time.Second

// gatewaySite is the site block of a gateway on /robot in front of be:
// store is the dingtalk block's store, async its async block or "" for sync.
func gatewaySite(be *backend, store, async string) string {
	return fmt.Sprintf(`	route /robot {
		dingtalk {
			secret %q
			lease %v
			%s
			%s
		}
		reverse_proxy %s
	}`, testSecret, lease, store, async, strings.TrimPrefix(be.URL, "http://"))
}

// redisStore is the store block for srv.
func redisStore(srv *redistest.Server) string {
	return fmt.Sprintf("store redis {\n\t\t\t\taddress %s\n\t\t\t}", srv.Addr)
}

// asyncBlock is the async block posting to wh, with extra subdirectives.
func asyncBlock(wh webhook, extra string) string {
	return fmt.Sprintf("async {\n\t\t\t\twebhook_hosts %s\n\t\t\t\t%s\n\t\t\t}", wh.host(), extra)
}

// inRedis inspects what the gateway left in Redis.
type inRedis struct {
	t *testing.T
	c *redis.Client
}

func inspect(t *testing.T, srv *redistest.Server) inRedis {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	return inRedis{t, c}
}

// noJobs waits until no job is left in Redis: every job was settled (a
// job settles just after its post).
func (r inRedis) noJobs() {
	r.t.Helper()
	waitFor(r.t, "every job to be settled in Redis", func() bool {
		n, err := r.c.ZCard(background, "caddy-dingtalk:jobs").Result()
		keys, err2 := r.c.Keys(background, "caddy-dingtalk:job:*").Result()
		return err == nil && err2 == nil && n == 0 && len(keys) == 0
	})
}

// answered waits until msgID's claim is the de-duplication record: held
// for the dedupe TTL, not a lease that a holder left behind.
func (r inRedis) answered(msgID string) {
	r.t.Helper()
	waitFor(r.t, "the claim of "+msgID+" to be the de-duplication record (PTTL about 2h)", func() bool {
		pttl, err := r.c.PTTL(background, "caddy-dingtalk:msg:dingrobot1:"+msgID).Result()
		return err == nil && pttl > time.Hour
	})
}

// notClaimed checks that msgID is not held by anyone.
func (r inRedis) notClaimed(msgID string) {
	r.t.Helper()
	n, err := r.c.Exists(background, "caddy-dingtalk:msg:dingrobot1:"+msgID).Result()
	if err != nil || n != 0 {
		r.t.Fatalf("%s is still claimed (%v)", msgID, err)
	}
}

// quiet proves that nothing more is posted for msgID: a control message
// that the backend answers only after two leases is posted after any
// late takeover of msgID's job would have been, and then msgID's answer
// has still been posted exactly want times.
func quiet(t *testing.T, gw *instance, be *backend, wh webhook, msgID string, want int) {
	t.Helper()
	control := dingtalktest.NewMsgID()
	be.slow(control, 2*lease)
	gw.mustAck(wh.callback(control))
	waitFor(t, "the control message's answer", func() bool { return wh.posts("re:"+control) == 1 })
	if n := wh.posts("re:" + msgID); n != want {
		t.Fatalf("the answer to %s was posted %d times, want %d", msgID, n, want)
	}
}

func TestSyncRedisKilledHolderLetsTheRedeliveryThrough(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	_, _, msg := killedSyncHolderLetsTheRedeliveryThrough(t, redisStore(srv))
	inspect(t, srv).answered(msg)
}

// killedSyncHolderLetsTheRedeliveryThrough kills the gateway while the
// backend works on a sync message, and starts it again: DingTalk's
// redelivery is processed once the dead holder's lease lapsed, within the
// lease + 10 s, and a redelivery after that is a duplicate. It returns the
// running gateway, the message's body and its msgId.
func killedSyncHolderLetsTheRedeliveryThrough(t *testing.T, store string) (*instance, []byte, string) {
	t.Helper()
	be := newBackend(t)
	release := be.holdCalls()
	gw := startInstance(t, "gateway", gatewaySite(be, store, ""))
	msg := dingtalktest.NewMsgID()
	body := dingtalktest.Callback{Text: "hello", MsgID: msg}.Body()

	go gw.deliver(body) //nolint:errcheck // the gateway dies before it answers
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	gw.kill()
	killed := time.Now()
	release()
	gw.start()

	// DingTalk redelivers until it gets an answer: while the dead
	// holder's lease runs the message is held (answered empty), then the
	// redelivery goes through.
	var status int
	var answer string
	waitFor(t, "a redelivery to be answered by the backend", func() bool {
		time.Sleep(100 * time.Millisecond)
		var err error
		status, answer, err = gw.deliver(body)
		return err != nil || answer != `{"msgtype":"empty"}`
	})
	if status != http.StatusOK || answer != "re:"+msg {
		t.Fatalf("the redelivery was answered %d %q, want 200 re:%s", status, answer, msg)
	}
	if took := time.Since(killed); took > lease+10*time.Second {
		t.Fatalf("the redelivery went through %v after the crash, want within the lease + 10s", took)
	}
	if _, answer, _ := gw.deliver(body); answer != `{"msgtype":"empty"}` {
		t.Fatalf("a redelivery after the answer was answered %q, want the empty reply", answer)
	}
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2 (the crashed call and the redelivery)", n)
	}
	return gw, body, msg
}

func TestAsyncRedisKilledJobIsResumedAfterRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	_, _, _, msg := killedJobIsResumedAfterRestart(t, redisStore(srv))
	r := inspect(t, srv)
	r.noJobs()
	r.answered(msg)
}

// The scenarios below run the same with every store that outlives the
// gateway's process (redis, file); each returns the gateway, running, and
// what the store's own checks need.

// killedJobIsResumedAfterRestart kills the gateway during a job and starts
// it again: the restarted gateway posts the answer once, within the lease +
// 10 s, the backend having got the message twice.
func killedJobIsResumedAfterRestart(t *testing.T, store string) (*instance, *backend, webhook, string) {
	t.Helper()
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	gw := startInstance(t, "gateway", gatewaySite(be, store, asyncBlock(wh, "")))
	msg := dingtalktest.NewMsgID()

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	gw.kill()
	killed := time.Now()
	release()
	gw.start()

	answeredOnceAfterTakeover(t, gw, be, wh, msg, killed)
	return gw, be, wh, msg
}

func TestAsyncRedisKilledJobIsTakenOverByTheOtherInstance(t *testing.T) {
	t.Parallel()
	killedJobIsTakenOverByTheOtherInstance(t, redistest.Start(t))
}

// A holder whose job's lease cannot be renewed must stop at the end of its
// lease, not run on beside the instance that takes the job over. Here Redis
// refuses the holder's job keys while still letting it keep its message's
// claim (an ACL, changed during the job): the store error that, when a
// holder renewed the two one after the other, left the message held while
// the job was taken over, so that the survivor dropped the job as a
// duplicate and the message rested on the holder alone. Now the claim is
// renewed with the job or not at all: the survivor takes the job over and
// posts the answer once, and the holder leaves it.
func TestAsyncRedisHolderThatCannotRenewItsJobLeavesIt(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := inspect(t, srv)
	if err := r.c.Do(background, "ACL", "SETUSER", "one", "on", ">pw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	oneStore := fmt.Sprintf("store redis {\n\t\t\t\turl redis://one:pw@%s\n\t\t\t}", srv.Addr)
	one := startInstance(t, "one", gatewaySite(be, oneStore, asyncBlock(wh, "")))
	two := startInstance(t, "two", gatewaySite(be, redisStore(srv), asyncBlock(wh, "")))
	msg := dingtalktest.NewMsgID()

	one.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	// From now on one may touch its messages' claims and the signs, not the jobs.
	if err := r.c.Do(background, "ACL", "SETUSER", "one", "resetkeys",
		"~caddy-dingtalk:msg:*", "~caddy-dingtalk:sig:*").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the survivor to take the job over or drop it", func() bool {
		return two.logged("dingtalk async job taken over")+two.logged("dingtalk async job dropped") > 0
	})
	if n := two.logged("dingtalk async job taken over"); n != 1 {
		t.Fatalf("the survivor took the job over %d times, want 1 (it dropped it: the holder's message claim outlived its job)", n)
	}
	waitFor(t, "the holder to leave its job", func() bool { return one.logged("dingtalk async job left to another holder") == 1 })
	waitFor(t, "the survivor to reach the backend", func() bool { return be.calls(msg) == 2 })
	release()

	waitFor(t, "the survivor to post the answer", func() bool { return wh.posts("re:"+msg) == 1 })
	quiet(t, two, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2", n)
	}
	r.noJobs()
	r.answered(msg)
}

// answeredOnceAfterTakeover checks that gw, having taken over the job of
// a holder killed at killed, posted its answer once within the lease +
// 10 s, the backend having got the message twice (once per holder).
func answeredOnceAfterTakeover(t *testing.T, gw *instance, be *backend, wh webhook, msg string, killed time.Time) {
	t.Helper()
	waitFor(t, gw.name+" to post the answer", func() bool { return wh.posts("re:"+msg) == 1 })
	if took := time.Since(killed); took > lease+10*time.Second {
		t.Fatalf("answered %v after the crash, want within the lease + 10s", took)
	}
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2", n)
	}
	if n := gw.logged("dingtalk async job taken over"); n != 1 {
		t.Fatalf("%s logged %d takeovers, want 1", gw.name, n)
	}
}

// killedJobIsTakenOverByTheOtherInstance kills one of two gateways on srv
// during a job: the survivor posts the answer once, within the lease + 10 s,
// having taken the job over (not dropped it).
func killedJobIsTakenOverByTheOtherInstance(t *testing.T, srv *redistest.Server) {
	t.Helper()
	r := inspect(t, srv)
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	site := gatewaySite(be, redisStore(srv), asyncBlock(wh, ""))
	one, two := startInstance(t, "one", site), startInstance(t, "two", site)
	msg := dingtalktest.NewMsgID()

	one.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	one.kill()
	killed := time.Now()
	release()

	answeredOnceAfterTakeover(t, two, be, wh, msg, killed)
	if n := two.logged("dingtalk async job dropped"); n != 0 {
		t.Fatalf("the survivor logged %d dropped jobs, want none", n)
	}
	r.noJobs()
	r.answered(msg)
}

func TestAsyncRedisStopDrainsTheRunningJob(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := inspect(t, srv)
	stopDrainsTheRunningJob(t, redisStore(srv), func(msg string) {
		r.noJobs()
		r.answered(msg)
	})
}

// stopDrainsTheRunningJob stops the gateway during a job shorter than the
// drain: the stopping gateway posts the answer before it exits (stopped
// then checks the store), and the deploy's next start answers a
// redelivery empty and runs nothing.
func stopDrainsTheRunningJob(t *testing.T, store string, stopped func(msg string)) {
	t.Helper()
	be, wh := newBackend(t), newWebhook(t)
	const job, drain = 2 * time.Second, 10 * time.Second
	gw := startInstance(t, "gateway", gatewaySite(be, store, asyncBlock(wh, fmt.Sprintf("drain %v", drain))))
	msg := dingtalktest.NewMsgID()
	be.slow(msg, job)

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	took := gw.stop(drain + 5*time.Second)
	if n := wh.posts("re:" + msg); n != 1 {
		t.Fatalf("%d posts when the stopped gateway exited (after %v), want 1", n, took)
	}
	stopped(msg)

	gw.start()
	if _, answer, _ := gw.deliver(wh.callback(msg)); answer != `{"msgtype":"empty"}` {
		t.Fatalf("a redelivery after the deploy was answered %q", answer)
	}
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 1 {
		t.Fatalf("the backend got the message %d times, want once", n)
	}
}

func TestAsyncRedisStopHandsBackAJobLongerThanTheDrain(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := inspect(t, srv)
	msg := stopHandsBackAJobLongerThanTheDrain(t, redisStore(srv), r.notClaimed)
	r.noJobs()
	r.answered(msg)
}

// stopHandsBackAJobLongerThanTheDrain stops the gateway during a job longer
// than the drain: it hands the job back and exits after the drain (stopped
// then checks the store); its next start runs the job and posts once.
func stopHandsBackAJobLongerThanTheDrain(t *testing.T, store string, stopped func(msg string)) string {
	t.Helper()
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	const drain = time.Second
	gw := startInstance(t, "gateway", gatewaySite(be, store, asyncBlock(wh, fmt.Sprintf("drain %v", drain))))
	msg := dingtalktest.NewMsgID()

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	// The stop is bounded: the drain, then the hand-back.
	if took := gw.stop(drain + 5*time.Second); took < drain {
		t.Fatalf("the gateway exited %v after SIGTERM, before the drain of %v", took, drain)
	}
	if n := gw.logged("dingtalk async job handed back"); n != 1 {
		t.Fatalf("%d lines say the job was handed back, want 1", n)
	}
	if n := wh.posts("re:" + msg); n != 0 {
		t.Fatalf("%d posts before the job could finish", n)
	}
	stopped(msg)

	release()
	gw.start()
	waitFor(t, "the next start to post the answer", func() bool { return wh.posts("re:"+msg) == 1 })
	quiet(t, gw, be, wh, msg, 1)
	if n := be.calls(msg); n != 2 {
		t.Fatalf("the backend got the message %d times, want 2", n)
	}
	return msg
}

func TestAsyncMemoryStopPostsTheFallbackForAJobLongerThanTheDrain(t *testing.T) {
	t.Parallel()
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	defer release()
	const drain = time.Second
	gw := startInstance(t, "gateway", gatewaySite(be, "", asyncBlock(wh, fmt.Sprintf("drain %v\n\t\t\t\tfallback_text \"sorry, try again\"", drain))))
	msg := dingtalktest.NewMsgID()

	gw.mustAck(wh.callback(msg))
	waitFor(t, "the backend to get the message", func() bool { return be.calls(msg) == 1 })
	took := gw.stop(drain + 15*time.Second) // the drain, then one webhook timeout for the fallback at most
	if took < drain {
		t.Fatalf("the gateway exited %v after SIGTERM, before the drain of %v", took, drain)
	}
	if n := wh.posts("sorry, try again"); n != 1 {
		t.Fatalf("the fallback was posted %d times, want once", n)
	}
	if n := wh.Count(); n != 1 {
		t.Fatalf("%d posts, want only the fallback", n)
	}
	if n := gw.logged("dingtalk async job dropped"); n != 1 {
		t.Fatalf("%d lines say the job was dropped, want 1", n)
	}
}

func TestAsyncRedisRestartedDuringJobs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	gw := startInstance(t, "gateway", gatewaySite(be, redisStore(srv), asyncBlock(wh, "")))
	msgs := []string{dingtalktest.NewMsgID(), dingtalktest.NewMsgID(), dingtalktest.NewMsgID()}
	for _, msg := range msgs {
		gw.mustAck(wh.callback(msg))
	}
	waitFor(t, "the backend to get every message", func() bool { return be.Count() == len(msgs) })
	srv.Restart() // with its data: the jobs are still recorded
	release()

	for _, msg := range msgs {
		waitFor(t, "the answer to "+msg, func() bool { return wh.posts("re:"+msg) == 1 })
	}
	quiet(t, gw, be, wh, msgs[0], 1)
	r := inspect(t, srv)
	for _, msg := range msgs {
		if n, p := be.calls(msg), wh.posts("re:"+msg); n != 1 || p != 1 {
			t.Errorf("%s: %d backend calls and %d posts, want one each", msg, n, p)
		}
		r.answered(msg)
	}
	r.noJobs()
}

func TestAsyncPoisonJobIsGivenUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	be, wh := newBackend(t), newWebhook(t)
	release := be.holdCalls()
	defer release()
	const maxAttempts = 2
	gw := startInstance(t, "gateway", gatewaySite(be, redisStore(srv),
		asyncBlock(wh, fmt.Sprintf("max_attempts %d\n\t\t\t\tfallback_text \"sorry, try again\"", maxAttempts))))
	msg := dingtalktest.NewMsgID()

	// Every start of the job kills its holder.
	gw.mustAck(wh.callback(msg))
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		waitFor(t, fmt.Sprintf("start %d of the job", attempt), func() bool { return be.calls(msg) == attempt })
		gw.kill()
		gw.start()
	}
	waitFor(t, "the fallback", func() bool { return wh.posts("sorry, try again") == 1 })
	// The line reports the fallback's post, so it is written after it.
	waitFor(t, "the line that says the job was given up", func() bool { return gw.logged("dingtalk async job given up") > 0 })
	release()
	quiet(t, gw, be, wh, msg, 0) // no answer to the given-up job, ever
	if n := gw.logged("dingtalk async job given up"); n != 1 {
		t.Fatalf("%d lines say the job was given up, want 1", n)
	}
	if n := be.calls(msg); n != maxAttempts {
		t.Fatalf("the backend got the poison job %d times, want %d", n, maxAttempts)
	}
	if n := wh.posts("sorry, try again"); n != 1 {
		t.Fatalf("the fallback was posted %d times, want once", n)
	}
	inspect(t, srv).noJobs()
}
