package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// The module's metrics live in Caddy's metrics registry, which the admin
// endpoint's /metrics and the metrics handler serve. Caddy makes a new
// registry for every config load, so the collectors are made once per
// process and registered into each new registry: counters keep counting
// across reloads, and two dingtalk handlers in one config share them.
//
// Label values come from the configuration (bot names) and from the fixed
// words below, never from a request: a forger cannot add series.
var metrics = newModuleMetrics()

// Request outcomes besides the reject reasons of reject.go.
const (
	requestAccepted  = "accepted"   // verified, not a duplicate: passed on
	requestDuplicate = "duplicate"  // verified, msgId seen before: answered empty
	requestQueueFull = "queue_full" // verified, the async queue was full: answered 503
)

// Outcomes of event pushes besides the reject reasons of reject.go.
const (
	eventCheckURL      = "check_url"      // a URL check, answered by the handler
	eventAccepted      = "accepted"       // verified, not a duplicate: passed on
	eventDuplicate     = "duplicate"      // verified, answered before: answered success again
	eventAnswered      = "answered"       // the rest of the route answered 2xx: DingTalk got success
	eventBackendFailed = "backend_failed" // the rest of the route did not: DingTalk got an error and redelivers
)

// jobQueued counts jobs the relay took on; the other job outcomes are relay.go's.
const jobQueued = "queued"

// Results of a post to a sessionWebhook, as counted and logged.
const (
	postOK      = "ok"      // DingTalk confirmed the message
	postErrCode = "errcode" // DingTalk answered an errcode other than "session expired"
	postExpired = "expired" // the webhook had expired, by its expiry time or DingTalk's errcode
	postRefused = "refused" // webhook_hosts does not allow the URL: nothing was contacted
	postError   = "error"   // network error, timeout, HTTP error or an unreadable answer
	postOpenAPI = "openapi" // delivered through DingTalk's OpenAPI instead of the sessionWebhook
)

// Backend modes: the rest of the route answering DingTalk, or run by the relay.
const (
	modeSync  = "sync"
	modeAsync = "async"
)

// moduleMetrics are the module's collectors.
type moduleMetrics struct {
	requests        *prometheus.CounterVec
	events          *prometheus.CounterVec
	jobs            *prometheus.CounterVec
	jobsRunning     *prometheus.GaugeVec
	jobsWaiting     *prometheus.GaugeVec
	webhookPosts    *prometheus.CounterVec
	backendDuration *prometheus.HistogramVec
	webhookDuration *prometheus.HistogramVec
	openAPICalls    *prometheus.CounterVec
}

func newModuleMetrics() *moduleMetrics {
	const ns, sub = "caddy", "dingtalk"
	return &moduleMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests the dingtalk handler decided on, by bot (empty before a sign matched) and outcome.",
		}, []string{"bot", "outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Event pushes the dingtalk_event handler decided on, by outcome: a reject reason, check_url, accepted, duplicate, answered, backend_failed.",
		}, []string{"outcome"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "async_jobs_total",
			Help: "Async jobs by bot and outcome: queued, succeeded, failed, timed_out, dropped.",
		}, []string{"bot", "outcome"}),
		jobsRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "async_jobs_running",
			Help: "Async jobs running the route or posting its answer, by bot.",
		}, []string{"bot"}),
		jobsWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "async_jobs_waiting",
			Help: "Async jobs waiting for a worker, by bot.",
		}, []string{"bot"}),
		webhookPosts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "webhook_posts_total",
			Help: "Posts of replies, retries included, by bot and result: ok, errcode, expired, refused, error; openapi for a reply delivered through the OpenAPI instead.",
		}, []string{"bot", "result"}),
		backendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "backend_duration_seconds",
			Help:    "How long the rest of the route took to answer an accepted callback, by bot and mode (sync, async).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"bot", "mode"}),
		webhookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "webhook_duration_seconds",
			Help:    "How long posts that contacted a sessionWebhook took, retries included, by bot and result.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"bot", "result"}),
		openAPICalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "openapi_calls_total",
			Help: "Calls to DingTalk's OpenAPI by bot, api (token, group_send, batch_send, download, card_create, card_streaming, card_instances, other) and result (ok, qps_limit, quota, bad_parameter, unauthorized, error, budget_spent: refused by api_rate before calling).",
		}, []string{"bot", "api", "result"}),
	}
}

// registerMetrics puts the module's collectors into the registry of the
// config being loaded. They are already there when another dingtalk
// handler of the same config registered them first.
func registerMetrics(ctx caddy.Context) error {
	return registerCollectors(ctx, moduleCollectors()...)
}

// registerCollectors puts collectors made once per process into the
// registry of the config being loaded, where they may be already.
func registerCollectors(ctx caddy.Context, collectors ...prometheus.Collector) error {
	registry := ctx.GetMetricsRegistry()
	if registry == nil {
		return errors.New("no metrics registry found")
	}
	for _, c := range collectors {
		var already prometheus.AlreadyRegisteredError
		if err := registry.Register(c); err != nil && !(errors.As(err, &already) && already.ExistingCollector == c) {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}
	return nil
}

// moduleCollectors are every collector of the module.
func moduleCollectors() []prometheus.Collector {
	return append([]prometheus.Collector{
		metrics.requests, metrics.events, metrics.jobs, metrics.jobsRunning, metrics.jobsWaiting,
		metrics.webhookPosts, metrics.backendDuration, metrics.webhookDuration, metrics.openAPICalls,
	}, cardMetrics.collectors()...)
}

// request counts a request's outcome: a reject reason or a request* word.
func (m *moduleMetrics) request(bot, outcome string) {
	m.requests.WithLabelValues(bot, outcome).Inc()
}

// event counts an event push's outcome: a reject reason or an event* word.
// The bot is always "": events are not a bot's; it is there to count
// rejections through rejectKind.
func (m *moduleMetrics) event(_, outcome string) {
	m.events.WithLabelValues(outcome).Inc()
}

// job counts an async job's outcome: jobQueued or one of relay.go's.
func (m *moduleMetrics) job(bot, outcome string) {
	m.jobs.WithLabelValues(bot, outcome).Inc()
}

// webhookPost counts a post and, when it contacted the webhook, its duration.
func (m *moduleMetrics) webhookPost(bot, result string, attempts int, took time.Duration) {
	m.webhookPosts.WithLabelValues(bot, result).Inc()
	if attempts > 0 {
		m.webhookDuration.WithLabelValues(bot, result).Observe(took.Seconds())
	}
}

// botMetrics are one bot's series on the way every accepted callback
// takes through one handler, looked up once at provision time so that
// counting a callback allocates nothing. Benchmark: BenchmarkReportAccepted.
type botMetrics struct {
	accepted, duplicate      prometheus.Counter
	backend                  prometheus.Observer // the handler's mode
	jobsRunning, jobsWaiting prometheus.Gauge    // nil in sync mode
}

// forBots gives each bot its series for a handler in mode. Looking them up
// also makes them show up, at 0, before the first callback.
func (m *moduleMetrics) forBots(bots []bot, mode string) {
	for i := range bots {
		b := &bots[i]
		bm := &botMetrics{
			accepted:  m.requests.WithLabelValues(b.name, requestAccepted),
			duplicate: m.requests.WithLabelValues(b.name, requestDuplicate),
			backend:   m.backendDuration.WithLabelValues(b.name, mode),
		}
		if mode == modeAsync {
			bm.jobsRunning = m.jobsRunning.WithLabelValues(b.name)
			bm.jobsWaiting = m.jobsWaiting.WithLabelValues(b.name)
		}
		b.metrics = bm
	}
}

// postResult classifies a sessionWebhook post's error as a post* word.
func postResult(err error) string {
	var answer *dingtalk.WebhookError
	switch {
	case err == nil:
		return postOK
	case errors.Is(err, dingtalk.ErrWebhookExpired):
		return postExpired
	case errors.Is(err, dingtalk.ErrWebhookNotAllowed):
		return postRefused
	case errors.As(err, &answer) && answer.ErrCode != 0:
		return postErrCode
	}
	return postError
}

// openAPIAPIs names the OpenAPI's paths in metrics; any other is "other".
var openAPIAPIs = map[string]string{
	openapi.TokenPath:     "token",
	openapi.GroupSendPath: "group_send",
	openapi.BatchSendPath: "batch_send",
	openapi.DownloadPath:  "download",

	openapi.CardCreatePath:    "card_create",
	openapi.CardStreamingPath: "card_streaming",
	openapi.CardInstancesPath: "card_instances",
}

// openAPICall returns what counts bot's OpenAPI calls (openapi.Config.OnCall).
func (m *moduleMetrics) openAPICall(bot string) func(path string, err error) {
	return func(path string, err error) {
		api, ok := openAPIAPIs[path]
		if !ok {
			api = "other"
		}
		m.openAPICalls.WithLabelValues(bot, api, openAPIResult(err)).Inc()
	}
}

// openAPIResult classifies an OpenAPI call's outcome for metrics.
func openAPIResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, openapi.ErrBudgetSpent):
		return "budget_spent"
	case errors.Is(err, openapi.ErrQPSLimit):
		return "qps_limit"
	case errors.Is(err, openapi.ErrQuotaExceeded):
		return "quota"
	case errors.Is(err, openapi.ErrBadParameter):
		return "bad_parameter"
	case errors.Is(err, openapi.ErrUnauthorized):
		return "unauthorized"
	}
	return "error"
}
