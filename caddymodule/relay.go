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
	// maxReplySize bounds a background answer kept in memory; DingTalk's own
	// message limits are far below it.
	maxReplySize = 1 << 20
	// shutdownGrace is how long jobs may still run when Caddy exits.
	shutdownGrace = 10 * time.Second
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
	// or times out. Placeholders are expanded. Default: none, nothing is
	// posted.
	FallbackText string `json:"fallback_text,omitempty"`

	// Show streamed answers as DingTalk AI cards that fill in as the text
	// arrives. Default: none, a streamed answer is posted when it ends.
	Card *AsyncCard `json:"card,omitempty"`
}

// relay runs accepted callbacks in the background. Each configuration has
// its own: jobs finish on the configuration they started with, and a
// reload neither waits for them nor loses them.
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

	// ctx ends the jobs that outlive the shutdown grace.
	ctx    context.Context
	cancel context.CancelFunc
}

func newRelay(cfg Async, limits dingtalk.SplitLimits, report *reporter, logger *zap.Logger) (*relay, error) {
	policy, err := dingtalk.NewWebhookPolicy(cfg.WebhookHosts)
	if err != nil {
		return nil, fmt.Errorf("dingtalk: async webhook_hosts: %v", err)
	}
	retries := defaultWebhookRetries
	if cfg.WebhookRetries != nil {
		retries = *cfg.WebhookRetries
	}
	if retries == 0 {
		retries = dingtalk.NoRetries
	}
	ctx, cancel := context.WithCancel(context.Background())
	client := &dingtalk.WebhookClient{Policy: policy, Timeout: time.Duration(cfg.WebhookTimeout), Retries: retries}
	return &relay{
		cfg:     cfg,
		client:  client,
		sender:  &sender{webhook: client, limits: limits},
		report:  report,
		logger:  logger,
		admit:   make(chan struct{}, cfg.Workers+cfg.Queue),
		workers: make(chan struct{}, cfg.Workers),
		ctx:     ctx,
		cancel:  cancel,
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
	return a
}

// claimTTL is how long a job holds its msgId before it is done: long enough
// for the route and every webhook attempt, short enough that a job lost
// with its process does not silence the message for the whole TTL.
func (rl *relay) claimTTL() time.Duration {
	attempts := time.Duration(max(rl.client.Retries, 0) + 1)
	return time.Duration(rl.cfg.Timeout) + attempts*(time.Duration(rl.cfg.WebhookTimeout)+5*time.Second) + time.Minute
}

// serve answers DingTalk at once and runs the rest of the route in the
// background. now is the time v was verified at; dedupe is nil when the
// message is not to be de-duplicated.
func (rl *relay) serve(w http.ResponseWriter, r *http.Request, v *Verified, now time.Time, dedupe *deduper, next caddyhttp.Handler) error {
	select {
	case rl.admit <- struct{}{}:
	default:
		metrics.request(v.Bot, requestQueueFull)
		metrics.job(v.Bot, outcomeDropped)
		rl.logger.Warn("dingtalk async queue is full; answered 503",
			zap.String("bot", v.Bot), zap.String("msg_id", v.Message.MsgID))
		return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("dingtalk: async queue is full"))
	}

	var c *claim
	if dedupe != nil {
		var err error
		c, err = dedupe.claim(r.Context(), v, now, rl.claimTTL())
		switch {
		case err != nil:
			if err := dedupe.storeUnavailable(w, r, v, err); err != nil {
				<-rl.admit
				return err
			}
			// on_error open: the job runs without a claim.
		case c == nil:
			<-rl.admit
			return writeJSON(w, http.StatusOK, emptyReply)
		}
	}
	rl.report.accepted(v)

	rec := newRecordedResponse(maxReplySize)
	j := &job{v: v, claim: c, req: detachRequest(r, v, rec), rec: rec, next: next}
	metrics.job(v.Bot, jobQueued)
	j.v.signer.metrics.jobsWaiting.Inc()
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

	posted string // the result of the post to the sessionWebhook; empty when nothing was posted
}

// run waits for a worker, runs the route, and delivers its answer.
func (rl *relay) run(j *job) {
	defer rl.jobs.Done()
	defer func() { <-rl.admit }()
	m := j.v.signer.metrics
	select {
	case rl.workers <- struct{}{}:
		defer func() { <-rl.workers }()
	case <-rl.ctx.Done():
		m.jobsWaiting.Dec()
		rl.finish(j, outcomeDropped, nil, false)
		return
	}
	m.jobsWaiting.Dec()
	m.jobsRunning.Inc()
	defer m.jobsRunning.Dec()
	if j.claim != nil {
		j.claim.keep(rl.ctx, rl.claimTTL()) // the wait in the queue does not count
	}

	start := time.Now()
	reply, err := rl.runRoute(j)
	took := time.Since(start)
	m.backend.Observe(took.Seconds())
	logger := rl.logger.With(zap.String("bot", j.v.Bot), zap.String("msg_id", j.v.Message.MsgID),
		zap.Duration("duration", took))
	if j.card.streaming() {
		rl.finishCard(j, err, logger)
		return
	}
	if err != nil {
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
	if reply == nil {
		rl.finish(j, outcomeSucceeded, logger, true)
		return
	}
	rl.finish(j, outcomeSucceeded, logger, rl.post(j, reply, logger))
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
)

// finish settles the claim (kept when the message was answered, released
// otherwise so that a redelivery can try again), then counts and logs the
// job's outcome: once the line is there, a redelivery meets the settled
// claim. logger is nil for a job that never ran.
func (rl *relay) finish(j *job, outcome string, logger *zap.Logger, answered bool) {
	if j.claim != nil {
		if answered {
			j.claim.done(rl.ctx)
		} else {
			j.claim.release(rl.ctx)
		}
	}
	if logger == nil {
		logger = rl.logger.With(zap.String("bot", j.v.Bot), zap.String("msg_id", j.v.Message.MsgID),
			zap.Duration("duration", 0))
	}
	metrics.job(j.v.Bot, outcome)
	logger.Info("dingtalk async job finished", zap.String("outcome", outcome), zap.Bool("answered", answered),
		zap.String("webhook_result", cmp.Or(j.posted, "none")))
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
	status := rec.statusCode()
	if status < 200 || status > 299 {
		return nil, fmt.Errorf("the route answered HTTP %d", status)
	}
	if rec.overflow {
		return nil, fmt.Errorf("the route's answer is larger than %d bytes", maxReplySize)
	}
	body := rec.body.Bytes()
	if len(body) == 0 {
		return nil, nil
	}
	if mediaType, _, _ := mime.ParseMediaType(rec.header.Get("Content-Type")); mediaType == "application/json" || json.Valid(body) {
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
	d := rl.sender.deliver(rl.ctx, j.v, msg, logger)
	j.posted = d.result
	return d.answered
}

// close lets jobs finish on their own, except when Caddy is exiting: then
// they get a bounded grace and are ended after it. A reload must not wait
// for jobs: Caddy holds its config lock during Cleanup.
func (rl *relay) close() {
	if !caddy.Exiting() {
		return
	}
	done := make(chan struct{})
	go func() { rl.jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		rl.logger.Warn("dingtalk async jobs still running at shutdown; ending them")
		rl.cancel()
		<-done
	}
}

// validate rejects settings that cannot work.
func (a Async) validate() error {
	switch {
	case a.Timeout < 0 || a.WebhookTimeout < 0:
		return errors.New("dingtalk: async timeouts must not be negative")
	case a.Workers < 0 || a.Queue < 0:
		return errors.New("dingtalk: async workers and queue must not be negative")
	case a.WebhookRetries != nil && *a.WebhookRetries < 0:
		return errors.New("dingtalk: async webhook_retries must not be negative")
	case a.Card != nil:
		return a.Card.validate()
	}
	return nil
}
