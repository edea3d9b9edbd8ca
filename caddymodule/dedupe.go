package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// emptyReply is DingTalk's "no reply" message, encoded once.
var emptyReply = func() []byte {
	body, err := json.Marshal(dingtalk.NewEmpty())
	if err != nil {
		panic(err) // a constant message always encodes
	}
	return body
}()

// claims takes keys in the store for the callbacks or events of one
// handler and settles them: kept once what they name was answered, released
// when answering failed, so that DingTalk's redelivery can try again. The
// dingtalk handler's deduper and the dingtalk_event handler share it.
//
// A key in flight is held by a lease, renewed while the request or job
// runs: when its holder dies, the lease lapses well before DingTalk
// redelivers, and the redelivery is processed. Only an answered key is
// kept for the TTL, as the de-duplication record.
type claims struct {
	store  Store
	ttl    time.Duration    // how long an answered key is remembered
	lease  time.Duration    // how long a key in flight is held without renewal
	now    func() time.Time // the handler's clock, for keeping a claim later
	logger *zap.Logger
	idKey  string // the log field naming what a key stands for: msg_id, event_id
	leases leaseRenewer
}

// claim is one request's hold on a key.
type claim struct {
	c     *claims
	key   string
	token Token
	id    string       // what the key stands for, for logs
	lease renewedLease // renews the lease while the key is served
}

// claimKey takes key, which stands for id, under a lease from now into c
// (which the caller provides, so that it can stay on its stack), reporting
// whether c holds it: false when another request holds it already.
func (cs *claims) claimKey(ctx context.Context, key, id string, now time.Time, c *claim) (bool, error) {
	return cs.claimAs(ctx, key, id, newClaimToken(), now, c)
}

// claimAs is claimKey for a given token: a job taken over claims its
// message with the token it holds the job by.
func (cs *claims) claimAs(ctx context.Context, key, id string, token Token, now time.Time, c *claim) (bool, error) {
	*c = claim{c: cs, key: key, token: token, id: id}
	if local, ok := cs.store.(processLeases); ok {
		return local.claimLease(key, token, now, cs.lease), nil
	}
	return cs.store.Claim(ctx, key, token, now, cs.lease)
}

// processLeases is implemented by a store whose every holder is this
// process (the file store): a lease ends with its holder, so the store
// keeps it in memory and writes nothing. A message in flight then costs
// the file no write until it is answered (BENCHMARKS.md, G), and after a
// crash its redelivery is processed at once rather than once the dead
// holder's lease lapsed. What outlives the holder is still written: the
// de-duplication record (Store.Keep for the TTL), the replay guard's
// pairs, and a job's claim with the job.
type processLeases interface {
	claimLease(key string, token Token, now time.Time, lease time.Duration) bool
	renewLease(key string, token Token, now time.Time, lease time.Duration)
}

// A claim, once taken, is settled whatever becomes of the request that
// took it (gone, timed out): the store's operations on it run under
// settleCtx, which ends never. No store reads a context's values, and
// context.WithoutCancel around the request's would cost an allocation per
// callback. Benchmark: BenchmarkServeHTTPAccepted.
var settleCtx = context.Background()

// renew extends the lease: the holder is still working.
func (c *claim) renew() {
	if local, ok := c.c.store.(processLeases); ok {
		local.renewLease(c.key, c.token, c.c.now(), c.c.lease)
		return
	}
	c.keep(c.c.lease)
}

// keep holds the key for ttl from now.
func (c *claim) keep(ttl time.Duration) {
	if err := c.c.store.Keep(settleCtx, c.key, c.token, c.c.now(), ttl); err != nil {
		c.c.logger.Error("extending a claim", zap.String(c.c.idKey, c.id), zap.Error(err))
	}
}

// done marks what the key stands for as answered: redeliveries within the TTL are duplicates.
func (c *claim) done() { c.keep(c.c.ttl) }

// release forgets the key, so that a redelivery is passed on again.
func (c *claim) release() {
	if err := c.c.store.Release(settleCtx, c.key, c.token); err != nil {
		c.c.logger.Error("releasing a failed claim", zap.String(c.c.idKey, c.id), zap.Error(err))
	}
}

// serveHeld runs serve while c holds its key, renewing its lease, then
// keeps the key for the TTL when serve reports that it answered, and
// releases it otherwise: also when serve panics, as reverse_proxy
// does with http.ErrAbortHandler when the upstream breaks off its answer
// after the headers, which leaves DingTalk with no answer.
func (c *claim) serveHeld(serve func() (answered bool, err error)) error {
	answered := false
	c.c.leases.hold(&c.lease, c, c.c.lease)
	defer func() {
		c.lease.stop()
		if answered {
			c.done()
		} else {
			c.release()
		}
	}()
	var err error
	answered, err = serve()
	return err
}

// deduper passes each msgId on once within its TTL. A message is claimed
// when it is accepted; the claim is kept once the message was answered and
// released when answering failed, so that DingTalk's redelivery can try again.
type deduper struct {
	claims
	report *reporter
	// storeUnavailable applies on_error when a claim fails: nil means pass
	// the callback on without a claim, an error is the answer to return.
	storeUnavailable func(http.ResponseWriter, *http.Request, *Verified, error) error
}

func newDeduper(store Store, ttl, lease time.Duration, now func() time.Time, report *reporter, logger *zap.Logger,
	storeUnavailable func(http.ResponseWriter, *http.Request, *Verified, error) error) *deduper {
	return &deduper{
		claims:           claims{store: store, ttl: ttl, lease: lease, now: now, logger: logger, idKey: "msg_id"},
		report:           report,
		storeUnavailable: storeUnavailable,
	}
}

// claim takes v's msgId under a lease from now, the time v was verified
// at, on behalf of token. It returns nil and no error when another request
// holds it already: the message is a duplicate, and reported as one.
func (d *deduper) claim(ctx context.Context, v *Verified, token Token, now time.Time) (*claim, error) {
	c := new(claim)
	if held, err := d.take(ctx, v, token, now, c); !held {
		return nil, err
	}
	return c, nil
}

// take is claim into a claim the caller provides (serveOnce's stays on its
// stack), reporting whether the msgId was taken.
func (d *deduper) take(ctx context.Context, v *Verified, token Token, now time.Time, c *claim) (bool, error) {
	held, err := d.claimAs(ctx, v.storeKey, v.Message.MsgID, token, now, c)
	if err != nil {
		return false, err
	}
	if !held {
		d.report.duplicate(v)
		return false, nil
	}
	return true, nil
}

// serveOnce is the synchronous way through: claim the message and pass it
// on, or answer empty when it was claimed already. When the rest of the
// route fails (an error, a 5xx answer, or a panic) the claim is released.
// now is the time a was verified at.
func (d *deduper) serveOnce(w http.ResponseWriter, r *http.Request, a *accepted, now time.Time, next caddyhttp.Handler) error {
	v := &a.Verified
	c := &a.claim
	held, err := d.take(r.Context(), v, newClaimToken(), now, c)
	if err != nil {
		if err := d.storeUnavailable(w, r, v, err); err != nil {
			return err
		}
		return d.report.passOn(w, r, v, next)
	}
	if !held {
		return writeJSON(w, http.StatusOK, emptyReply)
	}
	sw := &a.response
	*sw = statusWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	return c.serveHeld(func() (bool, error) {
		err := d.report.passOn(sw, r, v, next)
		return err == nil && sw.status < http.StatusInternalServerError, err
	})
}

// appendDedupeKey appends the key that identifies a message to b: msgIds
// are unique per robot, and a message that mentions two robots reaches each
// with its robotCode. Chained appends into the callback's keyRoom:
// BenchmarkServeHTTPAccepted.
func appendDedupeKey(b []byte, m *dingtalk.Message) []byte {
	return append(append(append(append(b, "msg:"...), m.RobotCode...), ':'), m.MsgID...)
}

// Claim tokens are unique across processes (a random half) and within one
// (a counter), so that only the claimer can keep or release a claim.
var (
	claimTokenPrefix = func() (prefix [8]byte) {
		_, _ = rand.Read(prefix[:])
		return prefix
	}()
	claimTokenCounter atomic.Uint64
)

// newClaimToken returns a token no other claim has.
func newClaimToken() Token {
	var t Token
	copy(t[:8], claimTokenPrefix[:])
	binary.BigEndian.PutUint64(t[8:], claimTokenCounter.Add(1))
	return t
}

// statusWriter remembers the status the rest of the route answered with.
type statusWriter struct {
	caddyhttp.ResponseWriterWrapper // by value: one allocation for both
	status                          int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

// writeJSON answers with a DingTalk message body. The two headers' values
// share one array, where Header.Set would allocate one for each (the names
// are canonical already). Benchmark: BenchmarkReplyText.
func writeJSON(w http.ResponseWriter, status int, body []byte) error {
	values := &[2]string{"application/json; charset=utf-8", strconv.Itoa(len(body))}
	h := w.Header()
	h["Content-Type"], h["Content-Length"] = values[0:1:1], values[1:2:2]
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}
