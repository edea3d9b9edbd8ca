package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// defaultBotName is the name of the bot the Caddyfile's `secret` shorthand configures.
const defaultBotName = "default"

// Bot is one DingTalk robot whose callbacks the handler accepts.
type Bot struct {
	// A name for this robot, unique within the handler. It is sent to the
	// next handler as the X-Dingtalk-Bot header and is available as
	// `{http.dingtalk.bot}`.
	Name string `json:"name"`

	// The robot application's AppSecret (also called Client Secret). Write
	// it as `{env.NAME}` or `{file./path}` to keep it out of the config;
	// placeholders are expanded when the config is loaded. It is never logged.
	Secret string `json:"secret"`

	// When set, a callback signed with this bot's secret must carry this
	// robotCode in its body, or it is rejected with 403. It also names the
	// robot in OpenAPI sends (default: app_key).
	RobotCode string `json:"robot_code,omitempty"`

	// The robot application's AppKey (also called Client ID). With it, and
	// the secret, the gateway calls DingTalk's OpenAPI as this robot: the
	// async relay sends a reply through it when the sessionWebhook is
	// missing or expired, and dingtalk_send and dingtalk_media use it.
	// Without it nothing calls the OpenAPI. `{env.*}` and `{file.*}`
	// placeholders are expanded when the config is loaded.
	AppKey string `json:"app_key,omitempty"`
}

// bot is a provisioned Bot: its secret expanded into a verifier.
type bot struct {
	name      string
	verifier  *dingtalk.Verifier
	robotCode string
	replayID  string
	metrics   *botMetrics // its series in the handler's mode
	api       *robotAPI   // nil without an AppKey
}

// replayID names a secret in the replay guard's keys. A verified sign is the
// one sign of its timestamp under its secret, so the timestamp and this name
// identify the pair as well as the sign does, and the keys need not hold
// anything of the sign, a credential while its timestamp is in the window.
// Bots with the same secret, in this instance or another one sharing the
// store, get the same name, as their signs are the same. It is keyed with
// the secret, so it tells nothing about it.
func replayID(secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("caddy-dingtalk replay guard"))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// provisionBots expands secrets and checks names. Error messages name the
// bot, never the secret.
func provisionBots(configured []Bot) ([]bot, error) {
	seen := make(map[string]bool, len(configured))
	bots := make([]bot, 0, len(configured))
	for i, b := range configured {
		if b.Name == "" {
			return nil, fmt.Errorf("bot #%d has no name", i+1)
		}
		if seen[b.Name] {
			return nil, fmt.Errorf("bot %q is configured twice", b.Name)
		}
		seen[b.Name] = true
		secret, err := expandSecret(b.Secret)
		if err != nil {
			return nil, fmt.Errorf("bot %q: secret: %v", b.Name, err)
		}
		bots = append(bots, bot{name: b.Name, verifier: dingtalk.NewVerifier(secret), robotCode: b.RobotCode, replayID: replayID(secret)})
	}
	return bots, nil
}

// match returns the first bot whose secret signs timestamp as sign.
func matchBot(bots []bot, timestamp, sign string) (*bot, bool) {
	for i := range bots {
		if bots[i].verifier.Matches(timestamp, sign) {
			return &bots[i], true
		}
	}
	return nil, false
}
