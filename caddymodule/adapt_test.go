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

// adapt runs the Caddyfile adapter, as `caddy adapt` does.
func adapt(caddyfile string) ([]byte, error) {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line "----------", the expected JSON) and compares.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, found := strings.Cut(string(data), "\n----------\n")
			if !found {
				t.Fatal("no ---------- line between the Caddyfile and the JSON")
			}
			got, err := adapt(caddyfile)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(pretty.String()) != strings.TrimSpace(expected) {
				t.Errorf("adapted JSON differs from the golden file; got:\n%s", pretty.String())
			}
		})
	}
}

// TestCaddyfileAdaptErrors checks that mistakes fail when the Caddyfile is
// adapted, with a message that names them.
func TestCaddyfileAdaptErrors(t *testing.T) {
	cases := []struct {
		name, directives, want string
	}{
		// dingtalk_reply
		{"unknown type", `dingtalk_reply txt hello`, `unknown type "txt"`},
		{"unknown type in block", "dingtalk_reply {\n type image\n}", `unknown type "image"`},
		{"no type", "dingtalk_reply {\n text hi\n}", "dingtalk_reply needs a type"},
		{"missing text", `dingtalk_reply text`, "a text reply needs a text"},
		{"markdown without text", "dingtalk_reply markdown {\n title T\n}", "a markdown reply needs a text"},
		{"markdown shorthand with one argument", `dingtalk_reply markdown Title`, "wrong argument count"},
		{"text shorthand with two arguments", `dingtalk_reply text a b`, "wrong argument count"},
		{"link shorthand arguments", `dingtalk_reply link T body`, "wrong argument count"},
		{"link without url", "dingtalk_reply link {\n title T\n text b\n}", "a link reply needs a url"},
		{"at_sender on link", "dingtalk_reply link {\n title T\n text b\n url https://example.com\n at_sender\n}", "a link reply cannot @ anyone"},
		{"at_all on feed_card", "dingtalk_reply feed_card {\n link T https://example.com https://example.com/p.png\n at_all\n}", "a feed_card reply cannot @ anyone"},
		{"at_sender on empty", "dingtalk_reply empty {\n at_sender\n}", "an empty reply cannot @ anyone"},
		{"at_sender with an argument", "dingtalk_reply text hi {\n at_sender yes\n}", "wrong argument count"},
		{"field of another type", "dingtalk_reply text hi {\n pic https://example.com/p.png\n}", "a text reply takes no pic"},
		{"text given twice", "dingtalk_reply text hi {\n text again\n}", "text is given twice"},
		{"type given twice", "dingtalk_reply text hi {\n type markdown\n}", "type is given twice"},
		{"unknown subdirective", "dingtalk_reply text hi {\n colour red\n}", `unrecognized subdirective "colour"`},
		{"action_card without url or buttons", "dingtalk_reply action_card {\n title T\n text b\n}", "either a url"},
		{"button without url", "dingtalk_reply action_card {\n title T\n text b\n button Yes\n}", "button needs a title and a url"},
		{"feed_card link without picture", "dingtalk_reply feed_card {\n link T https://example.com\n}", "link needs a title, a url and a picture"},
		{"feed_card without links", `dingtalk_reply feed_card`, "a feed_card reply needs a link"},
		// the dingtalk matcher
		{"unknown condition", "@m dingtalk {\n colour red\n}\nrespond @m 200", `unrecognized condition "colour"`},
		{"repeated condition", "@m dingtalk {\n admin\n admin\n}\nrespond @m 200", "admin is given twice"},
		{"repeated across merged matchers", "@m {\n dingtalk {\n  text a\n }\n dingtalk {\n  text b\n }\n}\nrespond @m 200", "text is given twice"},
		{"bad regexp", "@m dingtalk {\n text (unclosed\n}\nrespond @m 200", "missing closing )"},
		{"text without a pattern", "@m dingtalk {\n text\n}\nrespond @m 200", "text takes a regular expression"},
		{"conversation value", "@m dingtalk {\n conversation both\n}\nrespond @m 200", `conversation is single or group, not "both"`},
		{"flag with a value", "@m dingtalk {\n mentioned yes\n}\nrespond @m 200", "mentioned takes no value"},
		{"list without values", "@m dingtalk {\n sender\n}\nrespond @m 200", "sender takes one or more non-empty values"},
		{"arguments instead of a block", "@m dingtalk text ^hi\nrespond @m 200", "takes its conditions in a block"},
		{"condition with a block", "@m dingtalk {\n admin {\n  yes\n }\n}\nrespond @m 200", "admin takes no block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			caddyfile := ":8080 {\n\troute {\n\t\tdingtalk {\n\t\t\tsecret s\n\t\t}\n" + c.directives + "\n\t}\n}\n"
			_, err := adapt(caddyfile)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q\n%s", err, c.want, caddyfile)
			}
		})
	}
}

// The Caddyfiles the project ships must keep adapting.
func TestShippedCaddyfilesAdapt(t *testing.T) {
	for _, file := range []string{"../Caddyfile", "../examples/routing/Caddyfile"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := adapt(string(data)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
