package caddymodule

import (
	"cmp"
	"context"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// record claims j's message (when dedupe is not nil) and stores j, in one
// step of the store, before DingTalk is acked: the request as it arrived
// (a's sign headers included, even when the route does not forward them).
// It reports whether the message was j's to claim: false for a duplicate,
// and then nothing is stored.
func (rl *relay) record(r *http.Request, a *accepted, j *job, now time.Time, dedupe *deduper) (bool, error) {
	rec := jobRecord{
		Method: r.Method, URI: r.RequestURI, Host: r.Host, RemoteAddr: r.RemoteAddr, TLS: r.TLS != nil,
		Header: r.Header, Body: a.Body, VerifiedAt: now.UnixMilli(),
		timestamp: a.timestamp, sign: a.sign,
	}
	if server, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		for name, s := range activeServers() {
			if s == server {
				rec.Server = name
			}
		}
	}
	j.id = j.token.String()
	if dedupe != nil {
		j.claim = &claim{c: &dedupe.claims, key: a.storeKey, token: j.token, id: a.Message.MsgID}
	}
	asked := monotonicNanos()
	held, err := rl.store.RecordJob(r.Context(), j.claimKey(), StoredJob{ID: j.id, Payload: rec.encode()}, j.token, j.storeNow(), rl.lease, rl.retain)
	j.heldUntil.Store(asked + int64(rl.lease))
	return held, err
}

// keepJobsIn makes the relay record its jobs in store, under leases, and
// take over the jobs whose holder is gone. retain bounds how long a record
// is kept; storeUnavailable applies on_error when recording fails.
func (rl *relay) keepJobsIn(store JobStore, retain time.Duration,
	storeUnavailable func(http.ResponseWriter, *http.Request, *Verified, error) error) {
	rl.store, rl.retain, rl.storeUnavailable = store, retain, storeUnavailable
	rl.startTakingOver()
}

// takeOverEvery is how often, in leases, a relay looks for jobs to take
// over: a job whose holder died runs again within a lease and a quarter.
const takeOverEvery = 4

// startTakingOver looks for jobs to take over until close.
func (rl *relay) startTakingOver() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rl.stopTaking = func() { cancel(); <-done }
	go func() {
		defer close(done)
		tick := time.NewTicker(max(rl.lease/takeOverEvery, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				rl.takeOver(ctx)
			}
		}
	}()
}

// takeOver takes as many jobs as the queue has room for, and runs each.
func (rl *relay) takeOver(ctx context.Context) {
	servers := activeServers()
	if servers == nil {
		return // the HTTP app is not running (yet)
	}
	room := 0
	for room < rl.cfg.Workers && rl.tryAdmit() {
		room++
	}
	var taken []StoredJob
	if room > 0 {
		token := newClaimToken()
		asked := monotonicNanos()
		var err error
		if taken, err = rl.store.TakeJobs(ctx, token, time.Now(), rl.lease, room); err != nil {
			rl.logger.Error("looking for async jobs to take over", zap.Error(err))
		}
		for _, sj := range taken {
			rl.jobs.Add(1)
			go rl.resume(sj, token, asked+int64(rl.lease), servers)
		}
	}
	for range room - len(taken) {
		<-rl.admit
	}
}

// tryAdmit takes a place in the queue if one is free.
func (rl *relay) tryAdmit() bool {
	select {
	case rl.admit <- struct{}{}:
		return true
	default:
		return false
	}
}

// resumedJob is what a job taken over carries through the server to the
// dingtalk handler of its route, in the request's context: only this
// package can put it there.
type resumedJob struct {
	StoredJob
	token      Token
	heldUntil  int64 // as job.heldUntil
	verifiedAt time.Time
	reached    bool // a dingtalk async handler took the job
}

type resumedJobKey struct{}

// resumedFrom returns the job r runs, or nil for a request from a client.
func resumedFrom(r *http.Request) *resumedJob {
	rj, _ := r.Context().Value(resumedJobKey{}).(*resumedJob)
	return rj
}

// resume runs a job taken over through the server that first received it.
func (rl *relay) resume(sj StoredJob, token Token, heldUntil int64, servers map[string]*caddyhttp.Server) {
	defer rl.jobs.Done()
	defer func() { <-rl.admit }()
	logger := rl.logger.With(zap.String("job", sj.ID), zap.Int("attempts", sj.Attempts))
	drop := func(why string, fields ...zap.Field) {
		if err := rl.store.FinishJob(rl.postCtx, sj.ID, "", token, time.Now(), 0); err != nil {
			logger.Error("removing an async job from the store", zap.Error(err))
		}
		metrics.job("", outcomeDropped)
		logger.Error("dingtalk async job dropped: "+why, append(fields, zap.String("outcome", outcomeDropped))...)
	}
	// A record that makes this code panic would otherwise kill every
	// instance that takes it over, one after another.
	defer func() {
		if p := recover(); p != nil {
			drop("taking it over panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
		}
	}()
	rec, err := decodeJobRecord(sj.Payload)
	if err != nil {
		drop("its record cannot be read", zap.Error(err))
		return
	}
	server := servers[rec.Server]
	if server == nil {
		drop("this instance has no server of the name of the one that received it", zap.String("server", rec.Server))
		return
	}
	rj := &resumedJob{StoredJob: sj, token: token, heldUntil: heldUntil, verifiedAt: time.UnixMilli(rec.VerifiedAt)}
	server.ServeHTTP(newRecordedResponse(0), rec.request(context.WithValue(context.Background(), resumedJobKey{}, rj)))
	if !rj.reached {
		drop("its route no longer reaches a dingtalk handler in async mode that accepts it")
	}
}

// resume runs the job rj that the server brought to this handler: a was
// verified again at the job's first verification. The message is claimed
// with the job's token; when someone else answered it, or still holds it
// after claimTakenOver's wait, the job is a duplicate (a holder that died
// after answering) and is dropped.
func (rl *relay) resumeHere(r *http.Request, a *accepted, rj *resumedJob, dedupe *deduper, next caddyhttp.Handler) {
	rj.reached = true
	v := &a.Verified
	j := &job{v: v, next: next, req: r, rec: newRecordedResponse(maxReplySize), id: rj.ID, token: rj.token, attempts: rj.Attempts}
	j.heldUntil.Store(rj.heldUntil)
	logger := rl.jobLogger(j).With(zap.Int("attempts", j.attempts))
	if rl.closing.Load() {
		// Another handler's loop found it while this one drains: leave it
		// for an instance that is not stopping.
		if err := rl.store.HandBackJob(rl.postCtx, j.id, j.token); err != nil {
			logger.Error("handing an async job back to the store", zap.Error(err))
		}
		return
	}
	if dedupe != nil {
		// Not dedupe.claim: a job taken over is no callback, and when its
		// message is held it is no duplicate delivery either.
		c := new(claim)
		held, err := rl.claimTakenOver(r.Context(), dedupe, v, j.token, c)
		if err != nil {
			logger.Error("claiming the message of an async job taken over; handed back", zap.Error(err))
			_ = rl.store.HandBackJob(rl.postCtx, j.id, j.token)
			return
		}
		if held {
			j.claim = c
		} else {
			rl.settle(j, false)
			metrics.job(v.Bot, outcomeDropped)
			logger.Info("dingtalk async job dropped: its message is answered or held by another holder", zap.String("outcome", outcomeDropped))
			return
		}
	}
	if j.attempts > rl.cfg.MaxAttempts {
		if fallback := rl.fallback(j); fallback != nil {
			rl.post(j, fallback, logger)
		}
		rl.settle(j, true) // answered with the fallback, or not at all
		metrics.job(v.Bot, outcomeDropped)
		logger.Error("dingtalk async job given up: every holder that started it died or stopped before it finished",
			zap.Int("max_attempts", rl.cfg.MaxAttempts), zap.String("outcome", outcomeDropped),
			zap.String("webhook_result", cmp.Or(j.posted, "none")))
		return
	}
	metrics.job(v.Bot, outcomeTakenOver)
	logger.Warn("dingtalk async job taken over: its holder's lease lapsed, or the holder handed it back when it stopped",
		zap.String("outcome", outcomeTakenOver))
	v.signer.metrics.jobsWaiting.Inc()
	rl.jobs.Add(1)
	defer rl.jobs.Done()
	rl.execute(j)
}

// claimTakenOver claims the message of a job taken over, on behalf of
// token. Its holder renewed the message's lease with the job's, in one step
// of the store (JobStore.KeepJob), so the two lapsed together; but a store
// judges the job's lease and the claim's expiry each in its own way (Redis:
// a sorted set's score against its clock, a key's expiry in its
// millisecond ticks), and a takeover right at the lapse can find the claim
// still there. So a message held by another holder is claimed again for a
// tenth of a lease before the job counts as a duplicate: one answered
// already, or being answered by whoever holds it. Claiming ends early when
// the relay stops.
func (rl *relay) claimTakenOver(ctx context.Context, dedupe *deduper, v *Verified, token Token, c *claim) (bool, error) {
	giveUp := time.Now().Add(rl.lease / 10)
	retry := time.NewTicker(max(rl.lease/50, time.Millisecond))
	defer retry.Stop()
	for {
		held, err := dedupe.claimAs(ctx, v.storeKey, v.Message.MsgID, token, dedupe.now(), c)
		if held || err != nil || time.Now().After(giveUp) {
			return held, err
		}
		select {
		case <-retry.C:
		case <-rl.ctx.Done():
			return false, rl.ctx.Err()
		}
	}
}

// activeServers returns the HTTP servers of the running configuration, or
// nil while there are none. Jobs taken over run on the newest config, as
// the callbacks that arrive meanwhile do; a config still being loaded is
// never touched.
func activeServers() map[string]*caddyhttp.Server {
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return nil
	}
	if http, ok := app.(*caddyhttp.App); ok {
		return http.Servers
	}
	return nil
}
