package caddymodule

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Defaults of the async relay.
const (
	defaultAsyncTimeout   = 5 * time.Minute
	defaultAsyncWorkers   = 64
	defaultAsyncQueue     = 1024
	defaultWebhookTimeout = 10 * time.Second
	defaultWebhookRetries = 3
	defaultDrain          = 30 * time.Second
	defaultMaxAttempts    = 3
	// maxReplySize bounds a background answer kept in memory; DingTalk's own
	// message limits are far below it.
	maxReplySize = 1 << 20
)

// Async makes the dingtalk handler answer DingTalk at once with an empty
// reply and run the rest of the route in the background, posting its answer
// to the message's sessionWebhook. Slow backends (an LLM) then never make
// DingTalk time out and redeliver.
type Async struct {
	// How long the rest of the route may take in the background. Default: 5m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How many background jobs run at once. Default: 64.
	Workers int `json:"workers,omitempty"`

	// How many accepted jobs may wait for a worker. When they are all
	// taken, a new callback is answered 503 without being claimed, so that
	// DingTalk's redelivery can try again later. Default: 1024.
	Queue int `json:"queue,omitempty"`

	// The sessionWebhook hosts replies may be posted to, matched exactly;
	// the URL comes from the unsigned body, so nothing else is ever
	// contacted. Only https on the default port, except for a loopback
	// host:port listed explicitly (for tests and local trials), which is
	// also reached over plain http. Default: oapi.dingtalk.com.
	WebhookHosts []string `json:"webhook_hosts,omitempty"`

	// How long one POST to the sessionWebhook may take. Default: 10s.
	WebhookTimeout caddy.Duration `json:"webhook_timeout,omitempty"`

	// How many times a POST that failed with a network error or a 5xx is
	// tried again, with backoff. Default: 3.
	WebhookRetries *int `json:"webhook_retries,omitempty"`

	// A text posted to the sessionWebhook when the rest of the route fails
	// or times out, when a job is given up after max_attempts, and when
	// Caddy stops before a job could finish and no other instance can take
	// it over (the memory store). Placeholders are expanded. Default: none,
	// nothing is posted.
	FallbackText string `json:"fallback_text,omitempty"`

	// When Caddy stops, how long running jobs may still take before they
	// are handed back: with a store whose jobs outlive the process (Redis)
	// another instance, or this one restarted, takes them over; with the
	// memory store the fallback_text is posted. Default: 30s.
	Drain caddy.Duration `json:"drain,omitempty"`

	// How many times a job may be started: by the instance that accepted
	// it, then by each instance that took it over after its holder died or
	// stopped. A job that keeps killing its holder is then given up: the
	// fallback_text is posted, and the job is dropped and logged at ERROR.
	// Default: 3.
	MaxAttempts int `json:"max_attempts,omitempty"`

	// Show streamed answers as DingTalk AI cards that fill in as the text
	// arrives. Default: none, a streamed answer is posted when it ends.
	Card *AsyncCard `json:"card,omitempty"`
}

// relay runs accepted callbacks in the background. Each configuration has
// its own: jobs finish on the configuration they started with, and a
// reload neither waits for them nor loses them.
//
// With a store, every job is recorded in it before DingTalk is acked and
// held under a lease that the job renews while it runs (relay_jobs.go):
// when the holder dies or stops, the job is taken over.
type relay struct {
	cfg    Async
	client *dingtalk.WebhookClient
	sender *sender
	report *reporter
	logger *zap.Logger
	// cardRefusals holds the robots whose refused card was logged.
	cardRefusals sync.Map
	admit        chan struct{} // one token per accepted job, running or waiting
	workers      chan struct{} // one token per running job
	jobs         sync.WaitGroup

	store  JobStore      // nil without a store: jobs live in this process only
	lease  time.Duration // how long a job is held without renewal
	leases leaseRenewer  // renews the jobs' leases
	retain time.Duration // how long a job's record is kept at most
	// storeUnavailable applies on_error when recording a job fails.
	storeUnavailable func(http.ResponseWriter, *http.Request, *Verified, error) error
	stopTaking       func() // ends the loop that takes jobs over, and waits for it
	closing          atomic.Bool
	// releaseStore lets the store close: Caddy cleans modules up in no set
	// order, and the store must stay open until the jobs are settled.
	releaseStore func()

	// ctx ends the jobs that outlive the drain; postCtx ends their posts a
	// webhook timeout later.
	ctx         context.Context
	cancel      context.CancelFunc
	postCtx     context.Context
	cancelPosts context.CancelFunc
}

func newRelay(cfg Async, limits dingtalk.SplitLimits, lease time.Duration, report *reporter, logger *zap.Logger) (*relay, error) {
	policy, err := dingtalk.NewWebhookPolicy(cfg.WebhookHosts)
	if err != nil {
		return nil, fmt.Errorf("async webhook_hosts: %v", err)
	}
	retries := defaultWebhookRetries
	if cfg.WebhookRetries != nil {
		retries = *cfg.WebhookRetries
	}
	if retries == 0 {
		retries = dingtalk.NoRetries
	}
	ctx, cancel := context.WithCancel(context.Background())
	postCtx, cancelPosts := context.WithCancel(context.Background())
	client := &dingtalk.WebhookClient{Policy: policy, Timeout: time.Duration(cfg.WebhookTimeout), Retries: retries}
	return &relay{
		cfg:          cfg,
		client:       client,
		sender:       &sender{webhook: client, limits: limits},
		report:       report,
		logger:       logger,
		admit:        make(chan struct{}, cfg.Workers+cfg.Queue),
		workers:      make(chan struct{}, cfg.Workers),
		lease:        lease,
		stopTaking:   func() {},
		releaseStore: func() {},
		ctx:          ctx,
		cancel:       cancel,
		postCtx:      postCtx,
		cancelPosts:  cancelPosts,
	}, nil
}

// withDefaults fills in the defaults of unset fields.
func (a Async) withDefaults() Async {
	if a.Timeout == 0 {
		a.Timeout = caddy.Duration(defaultAsyncTimeout)
	}
	if a.Workers == 0 {
		a.Workers = defaultAsyncWorkers
	}
	if a.Queue == 0 {
		a.Queue = defaultAsyncQueue
	}
	if a.WebhookTimeout == 0 {
		a.WebhookTimeout = caddy.Duration(defaultWebhookTimeout)
	}
	if a.Drain == 0 {
		a.Drain = caddy.Duration(defaultDrain)
	}
	if a.MaxAttempts == 0 {
		a.MaxAttempts = defaultMaxAttempts
	}
	return a
}

// serve answers DingTalk at once and runs the rest of the route in the
// background. now is the time a was verified at; dedupe is nil when the
// message is not to be de-duplicated. The message is claimed and the job
// recorded, under one token, before DingTalk is acked.
func (rl *relay) serve(w http.ResponseWriter, r *http.Request, a *accepted, now time.Time, dedupe *deduper, next caddyhttp.Handler) error {
	v := &a.Verified
	select {
	case rl.admit <- struct{}{}:
	default:
		metrics.request(v.Bot, requestQueueFull)
		metrics.job(v.Bot, outcomeDropped)
		rl.logger.Warn("dingtalk async queue is full; answered 503",
			zap.String("bot", v.Bot), zap.String("msg_id", v.Message.MsgID))
		return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("dingtalk: async queue is full"))
	}

	j := &job{v: v, next: next, token: newClaimToken(), attempts: 1}
	storeDown := a.storeFailed // on_error open: the job runs without a claim or a record
	switch {
	case rl.store != nil && !storeDown:
		// The message is claimed and the job recorded in one step.
		held, err := rl.record(r, a, j, now, dedupe)
		switch {
		case err != nil:
			if err := rl.storeUnavailable(w, r, v, err); err != nil {
				<-rl.admit
				return err
			}
			j.id, j.claim = "", nil // on_error open: the job runs, but only in this process
		case !held:
			dedupe.report.duplicate(v)
			<-rl.admit
			return writeJSON(w, http.StatusOK, emptyReply)
		}
	case dedupe != nil && !storeDown:
		// A store that keeps no jobs: the message is claimed alone.
		var err error
		j.claim, err = dedupe.claim(r.Context(), v, j.token, now)
		switch {
		case err != nil:
			if err := dedupe.storeUnavailable(w, r, v, err); err != nil {
				<-rl.admit
				return err
			}
		case j.claim == nil:
			<-rl.admit
			return writeJSON(w, http.StatusOK, emptyReply)
		}
	}
	rl.report.accepted(v)

	j.rec = newRecordedResponse(maxReplySize)
	j.req = detachRequest(r, v, j.rec)
	metrics.job(v.Bot, jobQueued)
	rl.jobs.Add(1)
	go rl.run(j)
	return writeJSON(w, http.StatusOK, emptyReply)
}

// job is one accepted callback on its way through the background.
type job struct {
	v     *Verified
	claim *claim // nil without de-duplication
	req   *http.Request
	rec   *recordedResponse
	next  caddyhttp.Handler
	card  *cardWriter // nil without async card

	id       string // in the store; empty when the job is not recorded
	token    Token  // what holds the claim and the job
	attempts int    // the holders that started the job, this one included
	lost     atomic.Bool
	// heldUntil is when the job's lease lapses at the latest, as far as
	// this holder knows (monotonicNanos): the lease's length after the
	// last store operation that granted it began.
	heldUntil atomic.Int64
	lease     renewedLease // renews the leases from the start of execute

	posted string // the result of the post to the sessionWebhook; empty when nothing was posted
}

// run runs a job this relay accepted, then gives its admission back.
func (rl *relay) run(j *job) {
	defer rl.jobs.Done()
	defer func() { <-rl.admit }()
	j.v.signer.metrics.jobsWaiting.Inc()
	rl.execute(j)
}

// execute waits for a worker, runs the route while renewing the job's
// lease, delivers its answer and settles the job.
func (rl *relay) execute(j *job) {
	m := j.v.signer.metrics
	// The leases are renewed from now on, while the job waits for a
	// worker too: a queued job is not a dead holder's.
	ctx, abandon := context.WithCancel(j.req.Context())
	defer abandon()
	j.req = j.req.WithContext(ctx)
	rl.leases.hold(&j.lease, renewFunc(func() { rl.renew(j, abandon) }), rl.lease)
	select {
	case rl.workers <- struct{}{}:
		defer func() { <-rl.workers }()
	case <-rl.ctx.Done():
		m.jobsWaiting.Dec()
		rl.stopped(j, nil)
		return
	}
	m.jobsWaiting.Dec()
	m.jobsRunning.Inc()
	defer m.jobsRunning.Dec()

	start := time.Now()
	reply, err := rl.runRoute(j)
	took := time.Since(start)
	m.backend.Observe(took.Seconds())
	logger := rl.logger.With(zap.String("bot", j.v.Bot), zap.String("msg_id", j.v.Message.MsgID),
		zap.Duration("duration", took))
	switch {
	case rl.leaseLost(j):
		j.lease.stop()
		if j.claim != nil {
			j.claim.release() // the new holder claims the message at once
		}
		metrics.job(j.v.Bot, outcomeLeaseLost)
		logger.Warn("dingtalk async job left to another holder: its lease lapsed while it ran (the store was unreachable or this process stalled)",
			zap.String("outcome", outcomeLeaseLost))
		return
	case j.card.streaming():
		// Part of the answer is in the chat already: the card ends here,
		// also when Caddy stops, rather than start over elsewhere.
		rl.finishCard(j, err, logger)
		return
	case err != nil && rl.ctx.Err() != nil:
		rl.stopped(j, logger)
		return
	case err != nil:
		outcome := failureOutcome(err)
		logger.Warn("dingtalk async route failed", zap.String("outcome", outcome), zap.Error(err))
		if fallback := rl.fallback(j); fallback != nil {
			rl.post(j, fallback, logger)
		}
		// The route gave no answer: let a redelivery try again, even when
		// the fallback told the user that something went wrong.
		rl.finish(j, outcome, logger, false)
		return
	}
	rl.finish(j, outcomeSucceeded, logger, reply == nil || rl.post(j, reply, logger))
}

// renew extends the leases on the job's claim and record, in one step of
// the store when the job is recorded. When the record turns out to be held
// by another holder, the job was taken over while it ran here: it is
// abandoned, so that only the new holder answers. So it is too when the
// store fails for as long as the lease: the lease may have lapsed, and the
// job been taken over, without this holder hearing of it.
func (rl *relay) renew(j *job, abandon context.CancelFunc) {
	if j.id == "" {
		if j.claim != nil {
			j.claim.renew()
		}
		return
	}
	asked := monotonicNanos()
	held, err := rl.store.KeepJob(rl.postCtx, j.id, j.claimKey(), j.token, j.storeNow(), rl.lease)
	switch {
	case err != nil:
		rl.logger.Error("renewing an async job's lease", zap.String("msg_id", j.v.Message.MsgID), zap.Error(err))
		if rl.leaseLost(j) {
			abandon()
		}
	case !held:
		j.lost.Store(true)
		abandon()
	default:
		j.heldUntil.Store(asked + int64(rl.lease))
	}
}

// leaseLost reports whether the job's lease was lost: the store said so,
// or the holder could not renew it for a whole lease.
func (rl *relay) leaseLost(j *job) bool {
	return j.lost.Load() || j.id != "" && monotonicNanos() >= j.heldUntil.Load()
}

// claimKey is the key of the job's message's claim, or "" when it holds none.
func (j *job) claimKey() string {
	if j.claim == nil {
		return ""
	}
	return j.claim.key
}

// storeNow is the time the job's leases are judged at in a store that
// does not keep time itself: its claim's clock (the handler's, which tests
// set), or the real time.
func (j *job) storeNow() time.Time {
	if j.claim == nil {
		return time.Now()
	}
	return j.claim.c.now()
}

// failureOutcome is the outcome of a job whose route failed with err.
func failureOutcome(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return outcomeTimedOut
	}
	return outcomeFailed
}

// Job outcomes, as logged and counted.
const (
	outcomeSucceeded = "succeeded"
	outcomeFailed    = "failed"
	outcomeTimedOut  = "timed_out"
	outcomeDropped   = "dropped"
	outcomeTakenOver = "taken_over"  // started here after its holder's lease lapsed or it was handed back
	outcomeHandedBak = "handed_back" // left for another instance when this one stopped
	outcomeLeaseLost = "lease_lost"  // taken over by another instance while it ran here
)

// finish settles the claim (kept when the message was answered, released
// otherwise so that a redelivery can try again) and the job's record, then
// counts and logs the job's outcome: once the line is there, a redelivery
// meets the settled claim. logger is nil for a job that never ran.
func (rl *relay) finish(j *job, outcome string, logger *zap.Logger, answered bool) {
	j.lease.stop()
	rl.settle(j, answered)
	if logger == nil {
		logger = rl.jobLogger(j)
	}
	metrics.job(j.v.Bot, outcome)
	logger.Info("dingtalk async job finished", zap.String("outcome", outcome), zap.Bool("answered", answered),
		zap.String("webhook_result", cmp.Or(j.posted, "none")))
}

// settle removes the job's record and settles its claim, in one step of
// the store when the job is recorded: the claim is kept as the
// de-duplication record when the message was answered, and released
// otherwise.
func (rl *relay) settle(j *job, answered bool) {
	if j.id == "" {
		switch {
		case j.claim == nil:
		case answered:
			j.claim.done()
		default:
			j.claim.release()
		}
		return
	}
	var ttl time.Duration
	if answered && j.claim != nil {
		ttl = j.claim.c.ttl
	}
	if err := rl.store.FinishJob(rl.postCtx, j.id, j.claimKey(), j.token, j.storeNow(), ttl); err != nil {
		rl.logger.Error("settling an async job in the store", zap.String("msg_id", j.v.Message.MsgID), zap.Error(err))
	}
}

// jobLogger is the logger of a job that did not run.
func (rl *relay) jobLogger(j *job) *zap.Logger {
	return rl.logger.With(zap.String("bot", j.v.Bot), zap.String("msg_id", j.v.Message.MsgID), zap.Duration("duration", 0))
}

// stopped settles a job that Caddy stopped before it could finish: a store
// whose jobs outlive the process gets it back for another instance (or
// this one, restarted) to take over; otherwise the fallback text is posted,
// and the job is dropped.
func (rl *relay) stopped(j *job, logger *zap.Logger) {
	j.lease.stop()
	if logger == nil {
		logger = rl.jobLogger(j)
	}
	if j.id != "" && rl.store.JobsOutliveProcess() {
		if j.claim != nil {
			j.claim.release()
		}
		if err := rl.store.HandBackJob(rl.postCtx, j.id, j.token); err != nil {
			logger.Error("handing an async job back to the store", zap.Error(err))
		}
		metrics.job(j.v.Bot, outcomeHandedBak)
		logger.Warn("dingtalk async job handed back: Caddy stopped before it finished; another instance, or this one restarted, takes it over",
			zap.String("outcome", outcomeHandedBak))
		return
	}
	if fallback := rl.fallback(j); fallback != nil {
		rl.post(j, fallback, logger)
	}
	rl.settle(j, false)
	metrics.job(j.v.Bot, outcomeDropped)
	logger.Error("dingtalk async job dropped: Caddy stopped before it finished, and the store keeps no job beyond this process",
		zap.String("outcome", outcomeDropped), zap.String("webhook_result", cmp.Or(j.posted, "none")))
}

// runRoute runs the rest of the route within the timeout and returns the
// DingTalk message to post: nil when the route answered nothing to post.
func (rl *relay) runRoute(j *job) (reply []byte, err error) {
	ctx, cancel := context.WithTimeout(j.req.Context(), time.Duration(rl.cfg.Timeout))
	defer cancel()
	stop := context.AfterFunc(rl.ctx, cancel) // shutdown ends the run too
	defer stop()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in the route: %v\n%s", p, debug.Stack())
		}
	}()
	err = j.next.ServeHTTP(rl.responseWriter(j, ctx), j.req.WithContext(ctx))
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr // the handler's own error says less: it saw its context end
	}
	if err != nil {
		return nil, err
	}
	return replyFromResponse(j.rec)
}

// replyFromResponse turns the route's answer into the message to post:
// a DingTalk message JSON as is, other text wrapped as a text message,
// nothing for an empty body or an empty message.
func replyFromResponse(rec *recordedResponse) ([]byte, error) {
	return replyFromAnswer(rec.statusCode(), rec.header, rec.body.Bytes(), rec.overflow)
}

// replyFromAnswer is replyFromResponse for an answer's parts: an HTTP-mode
// robot's answer, whether the route ran in the background or a Stream
// message was delivered to it. overflow reports a body cut at maxReplySize.
func replyFromAnswer(status int, header http.Header, body []byte, overflow bool) ([]byte, error) {
	if status < 200 || status > 299 {
		return nil, fmt.Errorf("the route answered HTTP %d", status)
	}
	if overflow {
		return nil, fmt.Errorf("the route's answer is larger than %d bytes", maxReplySize)
	}
	if len(body) == 0 {
		return nil, nil
	}
	if mediaType, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mediaType == "application/json" || json.Valid(body) {
		var m struct {
			MsgType string `json:"msgtype"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.MsgType == "" {
			return nil, errors.New("the route answered JSON that is not a DingTalk message (no msgtype)")
		}
		if m.MsgType == "empty" {
			return nil, nil
		}
		return body, nil
	}
	return textMessage(string(body))
}

// textMessage is a DingTalk text message saying content.
func textMessage(content string) ([]byte, error) {
	return json.Marshal(dingtalk.NewText(content))
}

// fallback is the message posted when the route failed, or nil.
func (rl *relay) fallback(j *job) []byte {
	text := rl.fallbackText(j)
	if text == "" {
		return nil
	}
	msg, err := textMessage(text)
	if err != nil {
		return nil
	}
	return msg
}

// post delivers msg in answer to the job's message and reports whether it
// was (or may have been) shown in the chat.
func (rl *relay) post(j *job, msg []byte, logger *zap.Logger) bool {
	d := rl.sender.deliver(rl.postCtx, j.v, msg, logger)
	j.posted = d.result
	return d.answered
}

// close takes no more jobs over and lets running jobs finish on their own,
// except when Caddy is exiting: then it gives them the drain to finish;
// those still running after it are stopped and handed back (stopped), and
// only then is the store let go. A reload must not wait for jobs: Caddy
// holds its config lock meanwhile.
func (rl *relay) close() {
	rl.closing.Store(true)
	rl.stopTaking()
	defer rl.releaseStore()
	if !caddy.Exiting() {
		return
	}
	done := make(chan struct{})
	go func() { rl.jobs.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(time.Duration(rl.cfg.Drain)):
	}
	rl.logger.Warn("dingtalk async jobs still running after the drain; handing them back",
		zap.Duration("drain", time.Duration(rl.cfg.Drain)))
	rl.cancel()
	// The fallback posts of a store whose jobs end with the process get
	// one webhook timeout: the stop stays bounded.
	stop := time.AfterFunc(time.Duration(rl.cfg.WebhookTimeout), rl.cancelPosts)
	defer stop.Stop()
	<-done
}

// validate rejects settings that cannot work.
func (a Async) validate() error {
	switch {
	case a.Timeout < 0 || a.WebhookTimeout < 0 || a.Drain < 0:
		return errors.New("async timeouts and drain must not be negative")
	case a.MaxAttempts < 0:
		return errors.New("async max_attempts must not be negative")
	case a.Workers < 0 || a.Queue < 0:
		return errors.New("async workers and queue must not be negative")
	case a.WebhookRetries != nil && *a.WebhookRetries < 0:
		return errors.New("async webhook_retries must not be negative")
	case a.Card != nil:
		return a.Card.validate()
	}
	return nil
}
