package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the dingtalk handler.
const (
	defaultMaxAge    = dingtalk.DefaultMaxAge
	defaultMaxFuture = dingtalk.DefaultMaxFuture
	defaultMaxBody   = 1 << 20
	// maxMaxBody bounds max_body: the body is held in memory, and a limit
	// near the int64 range would overflow the reader's limit+1.
	maxMaxBody       = 1 << 30
	defaultDedupeTTL = 2 * time.Hour
)

// Handler verifies DingTalk robot callbacks and passes only genuine ones to
// the next handler. It checks, in this order and failing closed: the method,
// the presence of the timestamp and sign headers, the timestamp's window, the
// sign against each configured bot, the body's size, its JSON shape, the
// bot's robot code, and (the replay guard) that the timestamp and sign were
// not already used by another message. An accepted message whose msgId was
// already accepted within the de-duplication TTL is answered with an empty
// DingTalk reply and not passed on.
//
// The verified message is available to the rest of the route as
// `{http.dingtalk.*}` placeholders, to the `dingtalk` matcher and to the
// `dingtalk_reply` handler.
//
// Every decision is counted in the `caddy_dingtalk_*` metrics of Caddy's
// metrics registry and logged once: accepted callbacks and duplicates at
// INFO, rejections at WARN. Secrets, signs and session tokens never are.
type Handler struct {
	// The robots whose callbacks are accepted. The first bot whose secret
	// produces the request's sign wins and becomes the request's bot. Two
	// bots with the same robot code allow rotating its secret without downtime.
	Bots []Bot `json:"bots,omitempty"`

	// How old a callback's timestamp may be. Default: 1h, DingTalk's own rule.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// How far ahead of this server's clock a callback's timestamp may be.
	// Genuine callbacks are never ahead by more than clock skew. Default: 5m.
	MaxFuture caddy.Duration `json:"max_future,omitempty"`

	// The largest body accepted, in bytes. Default: 1 MiB; at most 1 GiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// De-duplication: how long an accepted msgId is remembered, so that
	// DingTalk's redelivery of a slow callback is answered empty instead of
	// being passed on a second time. A duration such as "2h", or "off".
	// Default: 2h.
	Dedupe string `json:"dedupe,omitempty"`

	// How long a message in flight is held without renewal. Its holder
	// renews the lease while the rest of the route (or the async job) runs;
	// a holder that died lets go when it lapses, and DingTalk's redelivery
	// (about a minute later) or, for an async job, another instance takes
	// the message over. Default: 20s.
	Lease caddy.Duration `json:"lease,omitempty"`

	// The replay guard; false turns it off. The sign covers only the
	// timestamp, not the body: whoever saw a valid timestamp and sign could
	// send any body with them while the timestamp is in the window. The
	// guard remembers which message first used each timestamp and sign, and
	// rejects them with 401 when they come back with another msgId later
	// than replay_grace after the timestamp. Default: true.
	ReplayGuard *bool `json:"replay_guard,omitempty"`

	// How long after its timestamp a timestamp and sign may still come
	// with another msgId. Two genuine messages to one robot in the same
	// millisecond carry the same sign and arrive within it; a sign leaked
	// from a log is useless after it. Default: 10s.
	ReplayGrace caddy.Duration `json:"replay_grace,omitempty"`

	// Whether the timestamp and sign headers reach the next handler; false
	// removes them, for backends that do not verify the sign themselves. A
	// sign is a credential until its timestamp leaves the window; not
	// forwarding it keeps it out of the backend's logs. Default: true.
	ForwardSign *bool `json:"forward_sign,omitempty"`

	// Adds the message's text, trimmed, to the INFO line logged for each
	// accepted callback. Off by default: what people write to a robot is
	// theirs, and logs travel further than the backend does.
	LogText bool `json:"log_text,omitempty"`

	// Answer DingTalk at once and run the rest of the route in the
	// background, posting its answer to the message's sessionWebhook.
	// Without it, the rest of the route answers DingTalk directly.
	Async *Async `json:"async,omitempty"`

	// Where accepted msgIds and used signs are remembered. Default: the
	// in-memory store, which is shared by every configuration of this
	// process and survives config reloads. The file store survives
	// restarts too; several Caddy instances share one memory through the
	// Redis store.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=dingtalk.stores inline_key=backend"`

	// The base URL of DingTalk's OpenAPI, which bots with an app_key call.
	// Plain http is allowed only to a loopback address (a local trial or a
	// test's fake). Default: https://api.dingtalk.com.
	APIBase string `json:"api_base,omitempty"`

	// How many OpenAPI calls a second each bot with an app_key makes at
	// most, spaced evenly. With the Redis store, the gateways sharing it
	// stay under this rate together (and fetch one access token between
	// them). Default: 20, DingTalk's limit per application and API.
	APIRate int `json:"api_rate,omitempty"`

	// How many characters a text or markdown reply the relay posts may
	// have before it is split into several messages, posted in order; a
	// part is also kept within DingTalk's byte limits. Default: 3500, above
	// which DingTalk renders markdown badly.
	MaxReplyChars int `json:"max_reply_chars,omitempty"`

	bots     []bot
	window   dingtalk.Window
	dedupe   *deduper
	replay   *replayGuard
	failOpen bool // the store's on_error: pass callbacks on when it fails
	relay    *relay
	apiKeys  []string // the pooled OpenAPI clients this handler holds
	report   *reporter
	logger   *zap.Logger
	now      func() time.Time

	stripSign bool // forward_sign false: the sign headers stop here
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.dingtalk",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision expands the bots' secrets, sets defaults and registers the
// module's metrics.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	var dedupeTTL time.Duration
	var err error
	if h.window, dedupeTTL, err = setLimitDefaults(&h.MaxAge, &h.MaxFuture, &h.MaxBody, &h.Lease, h.Dedupe); err != nil {
		return err
	}
	if h.ReplayGrace == 0 {
		h.ReplayGrace = caddy.Duration(defaultReplayGrace)
	}

	bots, err := provisionBots(h.Bots)
	if err != nil {
		return err
	}
	h.bots = bots
	warnOfTrialSecrets(h.logger, bots)

	if err := registerMetrics(ctx); err != nil {
		return err
	}
	mode := modeSync
	if h.Async != nil {
		mode = modeAsync
	}
	metrics.forBots(bots, mode)
	h.report = &reporter{logger: h.logger, logText: h.LogText}

	guardReplays := h.ReplayGuard == nil || *h.ReplayGuard
	h.stripSign = h.ForwardSign != nil && !*h.ForwardSign
	var store Store
	if dedupeTTL > 0 || guardReplays || h.usesOpenAPI() {
		store, err = h.loadStore(ctx)
		if err != nil {
			return err
		}
		if err := h.provisionOpenAPI(store); err != nil {
			return err
		}
		if fo, ok := store.(FailOpener); ok {
			h.failOpen = fo.FailOpen()
		}
		if dedupeTTL > 0 {
			h.dedupe = newDeduper(store, dedupeTTL, time.Duration(h.Lease), h.now, h.report, h.logger, h.storeUnavailable)
		}
		if guardReplays {
			grace := time.Duration(h.ReplayGrace)
			h.replay = &replayGuard{store: store, grace: grace, ttl: h.window.MaxAge + h.window.MaxFuture + grace}
		}
	}
	if h.Async != nil {
		cfg := h.Async.withDefaults()
		if err := cfg.validate(); err != nil {
			return err
		}
		if h.relay, err = newRelay(cfg, dingtalk.ReplyLimits(h.MaxReplyChars), time.Duration(h.Lease), h.report, h.logger); err != nil {
			return err
		}
		if jobs, ok := store.(JobStore); ok {
			h.relay.keepJobsIn(jobs, max(dedupeTTL, defaultDedupeTTL), h.storeUnavailable)
		}
		if r, ok := store.(retainer); ok {
			h.relay.releaseStore = r.retain()
		}
	}
	return nil
}

// setLimitDefaults gives the limits that the dingtalk and dingtalk_event
// handlers share their defaults where they are not set, and returns the
// timestamp window they make and the de-duplication TTL that dedupe says.
func setLimitDefaults(maxAge, maxFuture *caddy.Duration, maxBody *int64, lease *caddy.Duration, dedupe string) (dingtalk.Window, time.Duration, error) {
	if *maxAge == 0 {
		*maxAge = caddy.Duration(defaultMaxAge)
	}
	if *maxFuture == 0 {
		*maxFuture = caddy.Duration(defaultMaxFuture)
	}
	if *maxBody == 0 {
		*maxBody = defaultMaxBody
	}
	if *lease == 0 {
		*lease = caddy.Duration(defaultLease)
	}
	dedupeTTL, err := parseDedupe(dedupe)
	return dingtalk.Window{MaxAge: time.Duration(*maxAge), MaxFuture: time.Duration(*maxFuture)}, dedupeTTL, err
}

// Validate checks the configuration for mistakes that provisioning cannot fix.
func (h *Handler) Validate() error {
	if len(h.bots) == 0 {
		return fmt.Errorf("at least one bot with a secret is required")
	}
	if h.MaxAge < 0 || h.MaxFuture < 0 {
		return fmt.Errorf("max_age and max_future must not be negative")
	}
	if h.MaxBody < 0 || h.MaxBody > maxMaxBody {
		return fmt.Errorf("max_body must be between 0 and 1GiB")
	}
	if h.ReplayGrace < 0 || h.Lease < 0 {
		return fmt.Errorf("replay_grace and lease must not be negative")
	}
	if h.APIRate < 0 || h.MaxReplyChars < 0 {
		return fmt.Errorf("api_rate and max_reply_chars must not be negative")
	}
	return nil
}

// parseDedupe reads the dedupe field: 0 for "off", the default TTL when it
// is empty.
func parseDedupe(value string) (time.Duration, error) {
	switch value {
	case "":
		return defaultDedupeTTL, nil
	case "off":
		return 0, nil
	}
	ttl, err := caddy.ParseDuration(value)
	if err != nil || ttl <= 0 {
		return 0, fmt.Errorf("dedupe: %q is neither off nor a positive duration such as 2h", value)
	}
	return ttl, nil
}

// Cleanup lets background jobs of this configuration finish on their own;
// when Caddy exits, it drains them first.
func (h *Handler) Cleanup() error {
	if h.relay != nil {
		h.relay.close()
	}
	unregisterRobots(h)
	for _, key := range h.apiKeys {
		_, _ = openAPIClients.Delete(key)
	}
	return nil
}

// loadStore loads the configured store module, or the default in-memory one.
func (h *Handler) loadStore(ctx caddy.Context) (Store, error) {
	return loadStore(ctx, h, &h.StoreRaw)
}

// loadStore loads the store module of a handler whose StoreRaw field raw
// is, or the default in-memory one when it is not set.
func loadStore(ctx caddy.Context, handler any, raw *json.RawMessage) (Store, error) {
	if *raw == nil {
		*raw = caddyconfig.JSONModuleObject(MemoryStore{}, "backend", "memory", nil)
	}
	mod, err := ctx.LoadModule(handler, "StoreRaw")
	if err != nil {
		return nil, fmt.Errorf("loading store: %v", err)
	}
	return mod.(Store), nil
}

// ServeHTTP verifies the callback and passes it on, or rejects it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if rj := resumedFrom(r); rj != nil {
		h.resume(r, repl, rj, next)
		return nil
	}

	now := h.now()
	acc, rj := h.verify(r, now)
	if rj != nil {
		return h.reject(w, r, repl, rj)
	}
	msg := &acc.Verified

	dedupe := h.dedupe
	if h.replay != nil {
		rj, err := h.replay.check(r, acc, now)
		if rj != nil {
			return h.reject(w, r, repl, rj)
		}
		if err != nil {
			if err := h.storeUnavailable(w, r, msg, err); err != nil {
				return err
			}
			dedupe = nil // the store just failed: neither wait for it nor warn again
			acc.storeFailed = true
		}
	}

	h.prepareForward(r, repl, acc)

	if h.relay != nil {
		return h.relay.serve(w, r, acc, now, dedupe, next)
	}
	if dedupe == nil {
		return h.report.passOn(w, r, msg, next)
	}
	return dedupe.serveOnce(w, r, acc, now, next)
}

// resume runs an async job taken over, which the server brought here: the
// request as it first arrived, verified again at the time it first was.
// A handler that cannot run it leaves it unreached, and it is dropped.
func (h *Handler) resume(r *http.Request, repl *caddy.Replacer, rj *resumedJob, next caddyhttp.Handler) {
	if h.relay == nil || h.relay.store == nil {
		return
	}
	acc, rejected := h.verify(r, rj.verifiedAt)
	if rejected != nil {
		h.logger.Error("an async job taken over does not verify here", zap.String("reason", rejected.reason), zap.Error(rejected.err))
		return
	}
	h.prepareForward(r, repl, acc)
	h.relay.resumeHere(r, acc, rj, h.dedupe, next)
}

// storeUnavailable is the one place where the store's on_error policy is
// applied to a store that failed while handling v. With on_error open it
// logs a warning and returns nil: the callback goes on without
// de-duplication or replay protection. Otherwise it rejects the callback
// with 503, so that DingTalk delivers it again later.
func (h *Handler) storeUnavailable(w http.ResponseWriter, r *http.Request, v *Verified, err error) error {
	if !h.failOpen {
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		return h.reject(w, r, repl, newRejection(http.StatusServiceUnavailable, reasonStoreDown, v.Bot, err))
	}
	h.logger.Warn("dingtalk store unavailable; callback passed on without de-duplication or replay protection (on_error open)",
		zap.String("bot", v.Bot),
		zap.String("msg_id", v.Message.MsgID),
		zap.String("remote_addr", clientAddr(r)),
		zap.Error(err))
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
