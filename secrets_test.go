package caddydingtalk

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// secretVariable finds the environment variables a Caddyfile names, in
// either form, whose names say they hold a credential.
var secretVariable = regexp.MustCompile(`\{(?:\$|env\.)([A-Z0-9_]*(?:SECRET|PASSWORD|TOKEN|KEY)[A-Z0-9_]*)`)

// adaptWithSecrets adapts caddyfile with every secret variable it names set
// to a value of its own, and returns the JSON and those values.
func adaptWithSecrets(t *testing.T, name, caddyfile string) (string, []string) {
	t.Helper()
	var values []string
	for _, m := range secretVariable.FindAllStringSubmatch(caddyfile, -1) {
		// A secret file's path is no secret, nor is a password's bcrypt hash
		// (basic_auth keeps it in the JSON) or an AppKey (the robot's Client
		// ID, which it sends with its secret to get a token).
		if strings.HasSuffix(m[1], "_FILE") || strings.HasSuffix(m[1], "_HASH") || strings.HasSuffix(m[1], "APP_KEY") {
			continue
		}
		value := "value-of-" + m[1] + "-must-not-be-in-the-json"
		t.Setenv(m[1], value)
		values = append(values, value)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": name})
	if err != nil {
		t.Fatalf("adapting %s: %v", name, err)
	}
	return string(out), values
}

// No shipped Caddyfile writes a secret into the adapted JSON, which Caddy
// saves to autosave.json and serves on its admin API: secrets are
// {env.NAME} or {file.path}, expanded when the config loads.
func TestShippedCaddyfilesKeepSecretsOutOfTheJSON(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata"):
			return filepath.SkipDir
		case !d.IsDir() && (d.Name() == "Caddyfile" || strings.HasSuffix(d.Name(), ".Caddyfile")):
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 9 {
		t.Fatalf("found only %d Caddyfiles: %v", len(files), files)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			json, values := adaptWithSecrets(t, file, string(data))
			if len(values) == 0 && strings.Contains(string(data), "dingtalk") && !strings.Contains(string(data), "secret {file.") {
				t.Errorf("%s names no secret variable: is its secret written in the file?", file)
			}
			for _, value := range values {
				if strings.Contains(json, value) {
					t.Errorf("the adapted JSON holds a secret: write it as {env.NAME} or {file.path}, not {$NAME}")
				}
			}
		})
	}
}

// The test above would see a secret written the wrong way.
func TestAdaptWithSecretsSeesTheWrongForm(t *testing.T) {
	json, values := adaptWithSecrets(t, "Caddyfile", ":8080 {\n\tdingtalk {\n\t\tsecret {$CADDY_DINGTALK_TEST_SECRET}\n\t}\n}\n")
	if len(values) != 1 || !strings.Contains(json, values[0]) {
		t.Fatalf("a {$VAR} secret was not found in the JSON:\n%s", json)
	}
}
