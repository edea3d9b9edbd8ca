package caddydingtalk

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-dingtalk/caddy-dingtalk/caddymodule"
)

// readmeBlock returns the first fenced block of lang after marker in the README.
func readmeBlock(t *testing.T, marker, lang string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), marker)
	if !ok {
		t.Fatalf("README.md has no %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```"+lang+"\n")
	block, _, closed := strings.Cut(rest, "```\n")
	if !ok || !closed {
		t.Fatalf("README.md has no %s block after %q", lang, marker)
	}
	return block
}

// findHandler returns the first handler object named name in an adapted config.
func findHandler(v any, name string) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			return v
		}
		for _, child := range v {
			if h := findHandler(child, name); h != nil {
				return h
			}
		}
	case []any:
		for _, child := range v {
			if h := findHandler(child, name); h != nil {
				return h
			}
		}
	}
	return nil
}

// The README's opening shows a Caddyfile and the same route in JSON: the
// JSON loads in Caddy, and its dingtalk handler is the Caddyfile's.
func TestReadmeJSONLoads(t *testing.T) {
	t.Setenv("DINGTALK_APP_SECRET", "the README test's secret")
	route := readmeBlock(t, "<!-- README JSON", "json")
	config := `{"admin":{"disabled":true},"apps":{"http":{"servers":{"readme":{"listen":["127.0.0.1:0"],"routes":[` + route + `]}}}}}`
	if err := caddy.Validate(mustConfig(t, config)); err != nil {
		t.Fatalf("the README's JSON does not load: %v", err)
	}

	caddyfile := readmeBlock(t, "A site that verifies", "caddyfile")
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var fromCaddyfile, fromJSON any
	if err := json.Unmarshal(adapted, &fromCaddyfile); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(route), &fromJSON); err != nil {
		t.Fatal(err)
	}
	var want, got caddymodule.Handler
	remarshal(t, findHandler(fromCaddyfile, "dingtalk"), &want)
	remarshal(t, findHandler(fromJSON, "dingtalk"), &got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the README's JSON handler\n%+v\nis not its Caddyfile's\n%+v", got, want)
	}
}

func mustConfig(t *testing.T, config string) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func remarshal(t *testing.T, from any, to any) {
	t.Helper()
	data, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, to); err != nil {
		t.Fatal(err)
	}
}
