package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// A secret that cannot be expanded fails the config load with a message
// that names the variable or file and never a value.
func TestSecretErrorsNameTheVariable(t *testing.T) {
	const value = "a-secret-value-never-shown"
	t.Setenv("CADDY_DINGTALK_TEST_SET", value)
	t.Setenv("CADDY_DINGTALK_TEST_EMPTY", "")
	os.Unsetenv("CADDY_DINGTALK_TEST_UNSET")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ secret, want string }{
		{"{env.CADDY_DINGTALK_TEST_UNSET}", `bot "default": secret: environment variable CADDY_DINGTALK_TEST_UNSET is not set: set it where Caddy starts ({env.CADDY_DINGTALK_TEST_UNSET})`},
		{"{env.CADDY_DINGTALK_TEST_EMPTY}", `bot "default": secret: environment variable CADDY_DINGTALK_TEST_EMPTY is empty`},
		{"{file." + dir + "/missing}", `bot "default": secret: cannot read the file ` + dir + `/missing: no such file or directory`},
		{"{env.CADDY_DINGTALK_TEST_SET}{nonsense}", `unrecognized placeholder {nonsense}: only {env.NAME} and {file.path} are expanded`},
		{"", `bot "default": secret: it is empty`},
	} {
		_, err := provisionBots([]Bot{{Name: "default", Secret: tc.secret}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("secret %q: got %v, want %q", tc.secret, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), value) || strings.HasPrefix(err.Error(), "dingtalk:")) {
			t.Errorf("secret %q: %v shows the value or repeats the module's name", tc.secret, err)
		}
	}

	for _, secret := range []string{"{env.CADDY_DINGTALK_TEST_SET}", "{file." + secretFile + "}"} {
		bots, err := provisionBots([]Bot{{Name: "default", Secret: secret}})
		if err != nil {
			t.Fatalf("secret %q: %v", secret, err)
		}
		if ts := "1577262236757"; !bots[0].verifier.Matches(ts, dingtalk.Sign(value, ts)) {
			t.Errorf("secret %q was not expanded to the variable's or file's value", secret)
		}
	}
}

// A bot on a published trial secret is warned of once per config load; a
// real secret is not.
func TestTrialSecretIsWarnedOf(t *testing.T) {
	for _, tc := range []struct {
		secret string
		warns  int
	}{{"this is a secret", 1}, {"testAppSecret123", 1}, {"a real AppSecret", 0}} {
		core, logs := observer.New(zapcore.WarnLevel)
		bots, err := provisionBots([]Bot{{Name: "sales", Secret: tc.secret}})
		if err != nil {
			t.Fatal(err)
		}
		warnOfTrialSecrets(zap.New(core), bots)
		if got := logs.FilterMessageSnippet("published trial secret").FilterField(zap.String("bot", "sales")).Len(); got != tc.warns {
			t.Errorf("secret %q: %d warnings, want %d", tc.secret, got, tc.warns)
		}
	}
}
