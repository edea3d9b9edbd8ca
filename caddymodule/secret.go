package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// secretPlaceholder finds the {env.NAME} and {file.path} placeholders of a
// configured secret.
var secretPlaceholder = regexp.MustCompile(`\{(env|file)\.([^{}]+)\}`)

// expandSecret expands a configured secret (or a setting that may hold one,
// like a Redis URL) when the config loads: written as {env.NAME} or
// {file.path}, it stays a placeholder in the adapted JSON, Caddy's autosave
// and its admin API. Its errors name the variable or file and say what to
// do, never the value.
func expandSecret(value string) (string, error) {
	for _, m := range secretPlaceholder.FindAllStringSubmatch(value, -1) {
		switch kind, name := m[1], m[2]; kind {
		case "env":
			v, ok := os.LookupEnv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set: set it where Caddy starts (%s)", name, m[0])
			}
			if v == "" {
				return "", fmt.Errorf("environment variable %s is empty (%s)", name, m[0])
			}
		case "file":
			if _, err := os.Stat(name); err != nil {
				var pathErr *fs.PathError
				if errors.As(err, &pathErr) {
					err = pathErr.Err // its message repeats the path
				}
				return "", fmt.Errorf("cannot read the file %s: %v (%s)", name, err, m[0])
			}
		}
	}
	expanded, err := caddy.NewReplacer().ReplaceOrErr(value, true, true)
	if err != nil {
		// Caddy's message names the placeholder, not its value.
		return "", fmt.Errorf("%v: only {env.NAME} and {file.path} are expanded in secrets", err)
	}
	if expanded == "" {
		return "", errors.New("it is empty")
	}
	return expanded, nil
}

// trialSecrets are the secrets of DingTalk's published sign vectors, which
// the README's trial runs on: anyone can sign callbacks with them.
var trialSecrets = []string{"this is a secret", "testAppSecret123"}

// warnOfTrialSecrets logs, once per config load, each bot that runs on a
// trial secret. It tells them by the sign they make, as it holds no secret.
func warnOfTrialSecrets(logger *zap.Logger, bots []bot) {
	const ts = "1577262236757"
	for _, b := range bots {
		for _, trial := range trialSecrets {
			if b.verifier.Matches(ts, dingtalk.Sign(trial, ts)) {
				logger.Warn("this bot runs on a published trial secret: anyone can sign callbacks for it; give it the robot's AppSecret before DingTalk can reach it",
					zap.String("bot", b.name))
			}
		}
	}
}
