package caddymodule

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// OpenAPIStore is implemented by a Store that several gateways share (the
// Redis store). Through it they share each robot's OpenAPI access token and
// call budget: together they fetch one token and stay under one api_rate.
// It is optional, beside Store: with a store that does not implement it,
// each gateway keeps its own token and budget.
type OpenAPIStore interface {
	openapi.TokenStore
	// OpenAPIBudget returns the budget of appKey's calls, perSecond a
	// second, shared by every gateway that uses the same store.
	OpenAPIBudget(appKey string, perSecond int) openapi.Budget
	// ShareKey identifies what the store shares: two stores with the same
	// key share tokens and budgets.
	ShareKey() string
}

// robotAPI is how a robot with an AppKey reaches DingTalk's OpenAPI.
type robotAPI struct {
	client *openapi.Client
	limits dingtalk.SplitLimits // where its long replies are split
}

// apiSettings are what a robot's OpenAPI client is made from, besides its
// credentials.
type apiSettings struct {
	name   string // the bot's name, for its metrics
	base   string // the OpenAPI's base URL
	rate   int    // calls a second
	limits dingtalk.SplitLimits
	store  Store // the handler's store; shares tokens and budgets when it is an OpenAPIStore
}

// openAPIClients holds one client per robot, credentials, settings and
// shared store, for every configuration of this process: a reload with the
// same robot keeps its cached token and its budget.
var openAPIClients = caddy.NewUsagePool()

type pooledClient struct{ *openapi.Client }

// Destruct implements caddy.Destructor; a client holds nothing to close.
func (pooledClient) Destruct() error { return nil }

// localBudgets paces each robot application in this process when no shared
// store does: one Pace per AppKey and rate, whichever handlers use it.
var localBudgets sync.Map // "<rate>/<appKey>" → *openapi.Pace

// acquireOpenAPI returns the pooled client for a robot's expanded
// credentials, and the key that releases it. Errors never contain the
// secret.
func acquireOpenAPI(appKey, secret, robotCode string, s apiSettings) (*openapi.Client, string, error) {
	shareKey := "local"
	shared, isShared := s.store.(OpenAPIStore)
	if isShared {
		shareKey = shared.ShareKey()
	}
	sum := sha256.New()
	for _, part := range []string{s.name, appKey, secret, robotCode, s.base, strconv.Itoa(s.rate), shareKey} {
		sum.Write([]byte(part))
		sum.Write([]byte{0})
	}
	key := "openapi/" + hex.EncodeToString(sum.Sum(nil))
	value, _, err := openAPIClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		cfg := openapi.Config{
			AppKey: appKey, AppSecret: secret, RobotCode: robotCode, BaseURL: s.base,
			OnCall: metrics.openAPICall(s.name),
		}
		if isShared {
			cfg.Tokens = shared
			cfg.Budget = shared.OpenAPIBudget(appKey, s.rate)
		} else {
			pace, _ := localBudgets.LoadOrStore(strconv.Itoa(s.rate)+"/"+appKey, openapi.NewPace(s.rate, nil))
			cfg.Budget = pace.(*openapi.Pace)
		}
		client, err := openapi.New(cfg)
		return pooledClient{client}, err
	})
	if err != nil {
		return nil, "", err
	}
	return value.(pooledClient).Client, key, nil
}

// namedRobots lets dingtalk_send and dingtalk_media use a robot that a
// dingtalk handler configured, by its name. Every configuration that names
// a robot adds an entry and its handler's Cleanup removes it; the newest
// entry wins. So after a reload the new configuration's robots serve, and
// a configuration that failed to load leaves the running one's in place.
var namedRobots = struct {
	sync.Mutex
	m map[string][]namedRobot
}{m: map[string][]namedRobot{}}

type namedRobot struct {
	api   *robotAPI
	owner *Handler
}

func registerRobot(name string, api *robotAPI, owner *Handler) {
	namedRobots.Lock()
	defer namedRobots.Unlock()
	namedRobots.m[name] = append(namedRobots.m[name], namedRobot{api: api, owner: owner})
}

func unregisterRobots(owner *Handler) {
	namedRobots.Lock()
	defer namedRobots.Unlock()
	for name, entries := range namedRobots.m {
		entries = slices.DeleteFunc(entries, func(r namedRobot) bool { return r.owner == owner })
		if len(entries) == 0 {
			delete(namedRobots.m, name)
		} else {
			namedRobots.m[name] = entries
		}
	}
}

// lookupRobot returns the robot named name, or the only one when name is
// empty and exactly one robot with an AppKey is configured.
func lookupRobot(name string) (*robotAPI, error) {
	namedRobots.Lock()
	defer namedRobots.Unlock()
	if name == "" {
		if len(namedRobots.m) != 1 {
			return nil, fmt.Errorf("%d bots with an app_key are configured: name one with `bot <name>`", len(namedRobots.m))
		}
		for only := range namedRobots.m {
			name = only
		}
	}
	entries := namedRobots.m[name]
	if len(entries) == 0 {
		return nil, fmt.Errorf("no dingtalk handler configures a bot named %q with an app_key", name)
	}
	return entries[len(entries)-1].api, nil
}

// usesOpenAPI reports whether a bot of h has an AppKey.
func (h *Handler) usesOpenAPI() bool {
	for _, b := range h.Bots {
		if b.AppKey != "" {
			return true
		}
	}
	return false
}

// provisionOpenAPI gives each bot with an AppKey its OpenAPI client, shared
// through store when it is an OpenAPIStore, and makes it known by name to
// dingtalk_send and dingtalk_media. It runs after provisionBots, whose
// bots are h.Bots in order. Errors name the bot, never the secret.
func (h *Handler) provisionOpenAPI(store Store) error {
	if !h.usesOpenAPI() {
		return nil
	}
	base := cmp.Or(h.APIBase, openapi.DefaultBaseURL)
	if _, err := openapi.CheckBaseURL(base); err != nil {
		return fmt.Errorf("api_base: %v", err)
	}
	for i, b := range h.Bots {
		if b.AppKey == "" {
			continue
		}
		appKey, err := expandSecret(b.AppKey)
		if err != nil {
			return fmt.Errorf("bot %q: app_key: %v", b.Name, err)
		}
		secret, err := expandSecret(b.Secret)
		if err != nil {
			return fmt.Errorf("bot %q: secret: %v", b.Name, err)
		}
		settings := apiSettings{name: b.Name, base: base, rate: cmp.Or(h.APIRate, openapi.DefaultRate),
			limits: dingtalk.ReplyLimits(h.MaxReplyChars), store: store}
		client, key, err := acquireOpenAPI(appKey, secret, b.RobotCode, settings)
		if err != nil {
			return fmt.Errorf("bot %q: %v", b.Name, err)
		}
		h.apiKeys = append(h.apiKeys, key)
		api := &robotAPI{client: client, limits: settings.limits}
		h.bots[i].api = api
		registerRobot(b.Name, api, h)
	}
	return nil
}
