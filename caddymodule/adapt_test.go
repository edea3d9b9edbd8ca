package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// adaptSeparator splits a golden file into the Caddyfile and the JSON it must adapt to.
const adaptSeparator = "\n----------\n"

// adapt turns a Caddyfile into JSON with Caddy's own adapter.
func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return out, err
}

// TestCaddyfileAdapt runs every testdata/caddyfile_adapt/*.caddyfiletest:
// a Caddyfile, a line of dashes, and the JSON it adapts to. Run with
// UPDATE_GOLDEN=1 to rewrite the expected JSON after a deliberate change.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, found := strings.Cut(string(data), adaptSeparator)
			if !found {
				t.Fatalf("no %q separator", strings.TrimSpace(adaptSeparator))
			}
			got, err := adapt(t, caddyfile)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(file, []byte(caddyfile+adaptSeparator+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(pretty.String()) != strings.TrimSpace(want) {
				t.Errorf("adapted JSON differs:\n--- got\n%s\n--- want\n%s", pretty.String(), want)
			}
		})
	}
}

// TestCaddyfileErrors checks that mistakes fail `caddy adapt` with a message
// that says what is wrong and where.
func TestCaddyfileErrors(t *testing.T) {
	cases := map[string]struct{ block, want string }{
		"no secret":            {`dingtalk`, "needs at least one secret"},
		"empty block":          {"dingtalk {\n}", "needs at least one secret"},
		"unknown subdirective": {"dingtalk {\n secret s\n secrets s\n}", `unrecognized subdirective "secrets"`},
		"duplicate":            {"dingtalk {\n secret s\n max_age 1h\n max_age 2h\n}", "max_age is given twice"},
		"secret twice":         {"dingtalk {\n secret a\n secret b\n}", "secret is given twice"},
		"inline argument":      {"dingtalk s {\n secret s\n}", "wrong argument count"},
		"bot without secret":   {"dingtalk {\n bot a\n}", "bot needs a name and a secret"},
		"bot twice":            {"dingtalk {\n bot a s1\n bot a s2\n}", `bot "a" is configured twice`},
		"secret and default":   {"dingtalk {\n secret s\n bot default s2\n}", `bot "default" is configured twice`},
		"bad bot subdir":       {"dingtalk {\n bot a s {\n  code x\n }\n}", `unrecognized bot subdirective "code"`},
		"bad duration":         {"dingtalk {\n secret s\n max_age soon\n}", "not a positive duration"},
		"bad size":             {"dingtalk {\n secret s\n max_body lots\n}", "not a size"},
		"bad dedupe":           {"dingtalk {\n secret s\n dedupe maybe\n}", "not a positive duration"},
		"bad forward_sign":     {"dingtalk {\n secret s\n forward_sign no\n}", "expected on or off"},
		"log_text bare":        {"dingtalk {\n secret s\n log_text\n}", "wrong argument count"},
		"bad log_text":         {"dingtalk {\n secret s\n log_text yes\n}", "expected on or off"},
		"log_text twice":       {"dingtalk {\n secret s\n log_text on\n log_text off\n}", "log_text is given twice"},
		"unknown store":        {"dingtalk {\n secret s\n store disk\n}", "dingtalk.stores.disk"},
		"bad max_entries":      {"dingtalk {\n secret s\n store memory {\n  max_entries -1\n }\n}", "not a positive number"},
		"async argument":       {"dingtalk {\n secret s\n async on\n}", "wrong argument count"},
		"async unknown":        {"dingtalk {\n secret s\n async {\n  wait 1s\n }\n}", `unrecognized async subdirective "wait"`},
		"async duplicate":      {"dingtalk {\n secret s\n async {\n  workers 1\n  workers 2\n }\n}", "async: workers is given twice"},
		"async workers zero":   {"dingtalk {\n secret s\n async {\n  workers 0\n }\n}", `workers: "0" is not a whole number of at least 1`},
		"async no hosts":       {"dingtalk {\n secret s\n async {\n  webhook_hosts\n }\n}", "wrong argument count"},
	}
	for name, c := range cases {
		_, err := adapt(t, "http://localhost:8080 {\n"+c.block+"\n}\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
}
