package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

func init() {
	caddy.RegisterModule(StreamApp{})
}

// Defaults of the dingtalk_stream app.
const (
	defaultStreamLease     = 15 * time.Second
	defaultStreamDedupeTTL = 2 * time.Hour
)

// StreamApp receives DingTalk robot messages, card callbacks and events in
// Stream mode (a WebSocket the robot opens to DingTalk, so that it needs no
// public URL) and turns each robot message into the same signed HTTP
// callback an HTTP-mode robot gets: a `dingtalk` route of this Caddy, or
// any HTTP-mode bot backend, answers it unchanged, and its answer is
// posted to the message's sessionWebhook.
//
// Each robot keeps one connection, which survives config reloads that
// leave its credentials and topics alone.
type StreamApp struct {
	// Where connections are opened. Default: https://api.dingtalk.com.
	APIBase string `json:"api_base,omitempty"`

	// The robots to connect, each with its own connection.
	Robots []StreamRobot `json:"robots,omitempty"`

	// Where the msgIds of delivered messages (and, with single_connection,
	// the connection's lease) are kept. Default: the in-memory store.
	// Several instances share them through the Redis store.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=dingtalk.stores inline_key=backend"`

	robots []*streamRoute
	links  []string // the keys of this config's links in streamLinks
	logger *zap.Logger
}

// StreamRobot is one robot application connected in Stream mode.
type StreamRobot struct {
	// A name for this robot, unique within the app, used in logs and metrics.
	Name string `json:"name"`

	// The application's AppKey (Client ID). Placeholders are expanded when
	// the config is loaded.
	ClientID string `json:"client_id"`

	// The application's AppSecret (Client Secret): it opens the connection
	// and signs what is delivered. Write it as `{env.NAME}` or
	// `{file./path}`; placeholders are expanded when the config is loaded.
	// It is never logged.
	Secret string `json:"secret"`

	// Where robot messages are POSTed, signed as DingTalk signs HTTP-mode
	// callbacks: a `dingtalk` route of this Caddy
	// (http://127.0.0.1:8080/robot), which is served in-process, without a
	// loopback connection, or any HTTP-mode bot. Its answer is posted to
	// the message's sessionWebhook.
	DeliverTo string `json:"deliver_to,omitempty"`

	// Where card callbacks are POSTed; the JSON answer goes back to DingTalk.
	CardsTo string `json:"cards_to,omitempty"`

	// Where events are POSTed; a 2xx answer settles the event, any other
	// makes DingTalk deliver it again later.
	EventsTo string `json:"events_to,omitempty"`

	// The sessionWebhook hosts answers may be posted to, as the async
	// relay's webhook_hosts. Default: oapi.dingtalk.com.
	WebhookHosts []string `json:"webhook_hosts,omitempty"`

	// Connect from only one instance at a time: the one holding a lease in
	// the shared store (Redis), renewed while it is up. When it dies,
	// another instance takes over within the lease.
	SingleConnection bool `json:"single_connection,omitempty"`

	// How long the single connection's lease lasts unless renewed. Default: 15s.
	Lease caddy.Duration `json:"lease,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (StreamApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dingtalk_stream",
		New: func() caddy.Module { return new(StreamApp) },
	}
}

// Provision expands the robots' credentials, loads the store, and attaches
// each robot to its connection, which a previous config may have opened.
func (a *StreamApp) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.APIBase == "" {
		a.APIBase = stream.DefaultAPIBase
	}
	if u, err := url.Parse(a.APIBase); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("dingtalk_stream: api_base %q is not an http(s) URL", a.APIBase)
	}
	if err := registerCollectors(ctx, streamMetrics.collectors()...); err != nil {
		return err
	}
	if a.StoreRaw == nil {
		a.StoreRaw = caddyconfig.JSONModuleObject(MemoryStore{}, "backend", "memory", nil)
	}
	mod, err := ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		return fmt.Errorf("dingtalk_stream: loading store: %v", err)
	}
	store := mod.(Store)
	servers, err := httpApp(ctx)
	if err != nil {
		return err
	}

	seen := map[string]bool{}
	for i, r := range a.Robots {
		if r.Name == "" {
			return fmt.Errorf("dingtalk_stream: robot #%d has no name", i+1)
		}
		if seen[r.Name] {
			return fmt.Errorf("dingtalk_stream: robot %q is configured twice", r.Name)
		}
		seen[r.Name] = true
		route, err := r.provision(store, a.logger)
		if err != nil {
			return err
		}
		route.findLocal(servers)
		key := route.linkKey(a.APIBase)
		link, _, err := streamLinks.LoadOrNew(key, func() (caddy.Destructor, error) {
			return newStreamLink(a.APIBase, route), nil
		})
		if err != nil {
			return err
		}
		a.links = append(a.links, key)
		route.link = link.(*streamLink)
		a.robots = append(a.robots, route)
	}
	return nil
}

// provision checks the robot and expands its credentials. Errors name the
// robot and the setting, never a secret.
func (r StreamRobot) provision(store Store, logger *zap.Logger) (*streamRoute, error) {
	expand := func(name, value string) (string, error) {
		expanded, err := expandSecret(value)
		if err != nil {
			return "", fmt.Errorf("robot %q: %s: %w", r.Name, name, err)
		}
		return expanded, nil
	}
	clientID, err := expand("client_id", r.ClientID)
	if err != nil {
		return nil, err
	}
	secret, err := expand("secret", r.Secret)
	if err != nil {
		return nil, err
	}
	if r.DeliverTo == "" && r.CardsTo == "" && r.EventsTo == "" {
		return nil, fmt.Errorf("dingtalk_stream: robot %q has nowhere to deliver: set deliver_to, cards_to or events_to", r.Name)
	}
	for name, target := range map[string]string{"deliver_to": r.DeliverTo, "cards_to": r.CardsTo, "events_to": r.EventsTo} {
		if u, err := url.Parse(target); target != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			return nil, fmt.Errorf("dingtalk_stream: robot %q: %s %q is not an http(s) URL", r.Name, name, target)
		}
	}
	policy, err := dingtalk.NewWebhookPolicy(r.WebhookHosts)
	if err != nil {
		return nil, fmt.Errorf("dingtalk_stream: robot %q: webhook_hosts: %v", r.Name, err)
	}
	if r.Lease != 0 && time.Duration(r.Lease) < time.Second {
		return nil, fmt.Errorf("dingtalk_stream: robot %q: lease must be at least 1s", r.Name)
	}
	if _, shared := store.(*RedisStore); r.SingleConnection && !shared {
		// The memory store is the process's own, and a file store is
		// locked by one process.
		logger.Warn("single_connection without the Redis store keeps one connection per process, not one in all: configure the Redis store to share the lease",
			zap.String("robot", r.Name))
	}
	lease := time.Duration(r.Lease)
	if lease == 0 {
		lease = defaultStreamLease
	}
	return &streamRoute{
		name:      r.Name,
		clientID:  clientID,
		secret:    secret,
		deliverTo: r.DeliverTo,
		cardsTo:   r.CardsTo,
		eventsTo:  r.EventsTo,
		webhook:   &dingtalk.WebhookClient{Policy: policy},
		store:     store,
		claims:    claims{store: store, ttl: defaultStreamDedupeTTL, lease: defaultLease, now: time.Now, logger: logger.With(zap.String("robot", r.Name)), idKey: "msg_id"},
		single:    r.SingleConnection,
		lease:     lease,
		logger:    logger.With(zap.String("robot", r.Name)),
		metrics:   streamMetrics.forRobot(r.Name),
	}, nil
}

// httpApp is this config's http app, nil when it has none: the servers a
// delivery URL may name.
func httpApp(ctx caddy.Context) (*caddyhttp.App, error) {
	app, err := ctx.AppIfConfigured("http")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dingtalk_stream: %w", err)
	}
	servers, _ := app.(*caddyhttp.App)
	return servers, nil
}

// findLocal notes which of the robot's targets are servers of this Caddy,
// to be served in-process, and says so in the log.
func (r *streamRoute) findLocal(servers *caddyhttp.App) {
	r.local = map[string]*localServer{}
	for _, target := range []string{r.deliverTo, r.cardsTo, r.eventsTo} {
		if ls := findLocalServer(servers, target); ls != nil {
			r.local[target] = ls
			r.logger.Info("dingtalk stream delivers to a server of this Caddy in-process",
				zap.String("target", target), zap.String("server", ls.server.Name()))
		}
	}
}

// Start hands each robot's connection this config's routes, and starts the
// connections no earlier config started. Caddy starts a new config before it
// stops the old one, so a connection kept over a reload switches at once.
func (a *StreamApp) Start() error {
	for _, route := range a.robots {
		route.link.use(route)
	}
	return nil
}

// Stop waits for the requests this config's robots have its servers
// serving in-process. The connection outlives its config while another
// config uses it, and is closed by Cleanup when none does.
func (a *StreamApp) Stop() error {
	for _, route := range a.robots {
		for _, ls := range route.local {
			ls.stop()
		}
	}
	return nil
}

// Cleanup lets go of this config's connections; the last config using one
// closes it.
func (a *StreamApp) Cleanup() error {
	for _, key := range a.links {
		if _, err := streamLinks.Delete(key); err != nil {
			a.logger.Error("closing a Stream connection", zap.Error(err))
		}
	}
	return nil
}

// linkKey identifies a connection: a reload that changes none of these
// keeps it, a change of any of them opens a new one. It is a hash, so
// that the secret is not kept as a map key.
func (r *streamRoute) linkKey(apiBase string) string {
	sum := sha256.New()
	for _, part := range []string{apiBase, r.clientID, r.secret, strconv.FormatBool(r.single), r.lease.String()} {
		sum.Write([]byte(part))
		sum.Write([]byte{0})
	}
	for _, sub := range r.subscriptions() {
		sum.Write([]byte(sub.Type + " " + sub.Topic))
		sum.Write([]byte{0})
	}
	return "stream/" + hex.EncodeToString(sum.Sum(nil))
}

// Interface guards
var (
	_ caddy.App          = (*StreamApp)(nil)
	_ caddy.Provisioner  = (*StreamApp)(nil)
	_ caddy.CleanerUpper = (*StreamApp)(nil)
)
