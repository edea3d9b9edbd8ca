package caddymodule

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// RobotRef is the robot a dingtalk_send or dingtalk_media handler calls
// DingTalk's OpenAPI as: a bot with an app_key that a dingtalk handler
// elsewhere in the config has (by name, or the only one), or a robot of its
// own given by secret and app_key.
type RobotRef struct {
	// The name of a bot with an app_key in a dingtalk handler of this
	// config; its access token and budget are shared with that handler
	// (through its store, with other gateways too). Optional when exactly
	// one such bot is configured, or with secret and app_key.
	Bot string `json:"bot,omitempty"`

	// The robot's own AppSecret, for a config whose dingtalk handlers do
	// not have it. Write it as `{env.NAME}` or `{file./path}`; it is
	// expanded when the config is loaded and never logged.
	Secret string `json:"secret,omitempty"`

	// The robot's own AppKey, with secret.
	AppKey string `json:"app_key,omitempty"`

	// The robot's code in message APIs, with secret. Default: app_key.
	RobotCode string `json:"robot_code,omitempty"`

	// The OpenAPI's base URL, with secret. Default: https://api.dingtalk.com.
	APIBase string `json:"api_base,omitempty"`

	// OpenAPI calls a second, with secret. Default: 20.
	APIRate int `json:"api_rate,omitempty"`

	own    *robotAPI // with secret and app_key
	ownKey string    // releases own
}

// provision sets up the robot's own client when secret and app_key are
// given. Errors never contain the secret.
func (ref *RobotRef) provision(module string) error {
	if ref.Secret == "" && ref.AppKey == "" {
		if ref.RobotCode != "" || ref.APIBase != "" || ref.APIRate != 0 {
			return fmt.Errorf("%s: robot_code, api_base and api_rate go with secret and app_key", module)
		}
		return nil
	}
	repl := caddy.NewReplacer()
	secret, err := repl.ReplaceOrErr(ref.Secret, true, true)
	if err != nil || secret == "" {
		return fmt.Errorf("%s: the secret is empty or its placeholder cannot be expanded", module)
	}
	appKey, err := repl.ReplaceOrErr(ref.AppKey, true, true)
	if err != nil || appKey == "" {
		return fmt.Errorf("%s: the app_key is empty or its placeholder cannot be expanded", module)
	}
	if ref.APIRate < 0 {
		return fmt.Errorf("%s: api_rate must not be negative", module)
	}
	base := cmp.Or(ref.APIBase, openapi.DefaultBaseURL)
	if _, err := openapi.CheckBaseURL(base); err != nil {
		return fmt.Errorf("%s: api_base: %v", module, err)
	}
	settings := apiSettings{name: cmp.Or(ref.Bot, defaultBotName), base: base,
		rate: cmp.Or(ref.APIRate, openapi.DefaultRate), limits: dingtalk.ReplyLimits(0)}
	client, key, err := acquireOpenAPI(appKey, secret, ref.RobotCode, settings)
	if err != nil {
		return fmt.Errorf("%s: %v", module, err)
	}
	ref.own, ref.ownKey = &robotAPI{client: client, limits: settings.limits}, key
	return nil
}

// robot returns the robot to call as. A named bot is looked up at each
// request: the dingtalk handler that has it may be provisioned after this one.
func (ref *RobotRef) robot() (*robotAPI, error) {
	if ref.own != nil {
		return ref.own, nil
	}
	return lookupRobot(ref.Bot)
}

// cleanup releases the robot's own client.
func (ref *RobotRef) cleanup() {
	if ref.ownKey != "" {
		_, _ = openAPIClients.Delete(ref.ownKey)
	}
}

// unmarshalRobotBlock parses the directive of a handler that embeds
// RobotRef: no argument, then a block of RobotRef's subdirectives and the
// handler's own, which own parses (reporting false for one it does not
// know). Unknown and repeated subdirectives are errors.
func (ref *RobotRef) unmarshalRobotBlock(d *caddyfile.Dispenser, own func(sub string) (bool, error)) error {
	directive := d.Val()
	return eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) error {
		known, err := ref.unmarshalRobot(d, sub)
		if !known {
			known, err = own(sub)
		}
		if !known {
			return d.Errf("unrecognized %s subdirective %q", directive, sub)
		}
		return err
	})
}

// unmarshalRobot parses one of RobotRef's subdirectives, if sub is one, and
// reports whether it was.
func (ref *RobotRef) unmarshalRobot(d *caddyfile.Dispenser, sub string) (bool, error) {
	var err error
	switch sub {
	case "bot":
		ref.Bot, err = singleArg(d)
	case "secret":
		ref.Secret, err = secretArg(d)
	case "app_key":
		ref.AppKey, err = singleArg(d)
	case "robot_code":
		ref.RobotCode, err = singleArg(d)
	case "api_base":
		ref.APIBase, err = singleArg(d)
	case "api_rate":
		ref.APIRate, err = countArg(d, 1)
	default:
		return false, nil
	}
	return true, err
}

// errNoRobot is the error of a request whose robot cannot be found: a
// configuration mistake, answered 500.
var errNoRobot = errors.New("no robot to call the OpenAPI as")
