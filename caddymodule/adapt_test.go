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
// that says what is wrong.
func TestCaddyfileErrors(t *testing.T) {
	cases := []struct {
		name string
		// inRoute puts directives in a route after a valid dingtalk handler;
		// otherwise they stand alone in the site.
		inRoute          bool
		directives, want string
	}{
		// the dingtalk handler
		{"no secret", false, `dingtalk`, "needs at least one secret"},
		{"empty block", false, "dingtalk {\n}", "needs at least one secret"},
		{"unknown subdirective", false, "dingtalk {\n secret s\n secrets s\n}", `unrecognized subdirective "secrets"`},
		{"duplicate", false, "dingtalk {\n secret s\n max_age 1h\n max_age 2h\n}", "max_age is given twice"},
		{"secret with a space", false, "dingtalk {\n secret two words\n}", "secret takes exactly one argument (quote it"},
		{"secret twice", false, "dingtalk {\n secret a\n secret b\n}", "secret is given twice"},
		{"inline argument", false, "dingtalk s {\n secret s\n}", "wrong argument count"},
		{"bot without secret", false, "dingtalk {\n bot a\n}", "bot needs a name and a secret"},
		{"bot twice", false, "dingtalk {\n bot a s1\n bot a s2\n}", `bot "a" is configured twice`},
		{"secret and default", false, "dingtalk {\n secret s\n bot default s2\n}", `bot "default" is configured twice`},
		{"bad bot subdir", false, "dingtalk {\n bot a s {\n  code x\n }\n}", `unrecognized bot subdirective "code"`},
		{"bad duration", false, "dingtalk {\n secret s\n max_age soon\n}", "not a positive duration"},
		{"bad size", false, "dingtalk {\n secret s\n max_body lots\n}", "not a size"},
		{"size over 1GiB", false, "dingtalk {\n secret s\n max_body 1.1GiB\n}", "not a size"},
		{"bad dedupe", false, "dingtalk {\n secret s\n dedupe maybe\n}", "not a positive duration"},
		{"bad forward_sign", false, "dingtalk {\n secret s\n forward_sign no\n}", "expected on or off"},
		{"log_text bare", false, "dingtalk {\n secret s\n log_text\n}", "wrong argument count"},
		{"bad log_text", false, "dingtalk {\n secret s\n log_text yes\n}", "expected on or off"},
		{"log_text twice", false, "dingtalk {\n secret s\n log_text on\n log_text off\n}", "log_text is given twice"},
		{"bad replay_guard", false, "dingtalk {\n secret s\n replay_guard maybe\n}", "expected on or off"},
		{"replay_guard twice", false, "dingtalk {\n secret s\n replay_guard on\n replay_guard off\n}", "replay_guard is given twice"},
		{"bad replay_grace", false, "dingtalk {\n secret s\n replay_grace 0s\n}", "replay_grace: \"0s\" is not a positive duration"},
		{"unknown store", false, "dingtalk {\n secret s\n store disk\n}", "dingtalk.stores.disk"},
		{"bad max_entries", false, "dingtalk {\n secret s\n store memory {\n  max_entries -1\n }\n}", "not a positive number"},
		{"redis without address", false, "dingtalk {\n secret s\n store redis {\n  db 1\n }\n}", "needs an address or a url"},
		{"redis address and url", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  url redis://a\n }\n}", "either address or url, not both"},
		{"redis argument", false, "dingtalk {\n secret s\n store redis a:6379\n}", "wrong argument count"},
		{"redis unknown", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  pasword p\n }\n}", `unrecognized redis store subdirective "pasword"`},
		{"redis duplicate", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  db 1\n  db 2\n }\n}", "db is given twice"},
		{"redis db", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  db -1\n }\n}", `db: "-1" is not a database number`},
		{"redis timeout", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  timeout 0s\n }\n}", "timeout: \"0s\" is not a positive duration"},
		{"redis on_error", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  on_error maybe\n }\n}", `on_error: expected open or closed, got "maybe"`},
		{"redis password with a space", false, "dingtalk {\n secret s\n store redis {\n  address a:6379\n  password two words\n }\n}", "password takes exactly one argument (quote it"},
		{"file argument", false, "dingtalk {\n secret s\n store file /var/lib/x.db\n}", "wrong argument count"},
		{"file unknown", false, "dingtalk {\n secret s\n store file {\n  file /x.db\n }\n}", `unrecognized file store subdirective "file"`},
		{"file duplicate", false, "dingtalk {\n secret s\n store file {\n  path /a.db\n  path /b.db\n }\n}", "path is given twice"},
		{"file fsync", false, "dingtalk {\n secret s\n store file {\n  fsync yes\n }\n}", "expected on or off"},
		{"file max_entries", false, "dingtalk {\n secret s\n store file {\n  max_entries 0\n }\n}", "max_entries: \"0\" is not a whole number of at least 1"},
		{"async argument", false, "dingtalk {\n secret s\n async on\n}", "wrong argument count"},
		{"async unknown", false, "dingtalk {\n secret s\n async {\n  wait 1s\n }\n}", `unrecognized async subdirective "wait"`},
		{"async duplicate", false, "dingtalk {\n secret s\n async {\n  workers 1\n  workers 2\n }\n}", "workers is given twice"},
		{"card argument", false, "dingtalk {\n secret s\n async {\n  card on\n }\n}", "wrong argument count"},
		{"card unknown", false, "dingtalk {\n secret s\n async {\n  card {\n   speed 1\n  }\n }\n}", `unrecognized card subdirective "speed"`},
		{"card duplicate", false, "dingtalk {\n secret s\n async {\n  card {\n   key a\n   key b\n  }\n }\n}", "key is given twice"},
		{"card overflow", false, "dingtalk {\n secret s\n async {\n  card {\n   overflow drop\n  }\n }\n}", `overflow must be "card" or "messages"`},
		{"card max_chars", false, "dingtalk {\n secret s\n async {\n  card {\n   max_chars 0\n  }\n }\n}", "max_chars"},
		{"card interval", false, "dingtalk {\n secret s\n async {\n  card {\n   interval 0s\n  }\n }\n}", "not a positive duration"},
		{"async workers zero", false, "dingtalk {\n secret s\n async {\n  workers 0\n }\n}", `workers: "0" is not a whole number of at least 1`},
		{"app_key without secret", false, "dingtalk {\n bot a s\n app_key k\n}", "app_key goes with `secret`"},
		{"app_key twice", false, "dingtalk {\n bot a s {\n  app_key k\n  app_key k2\n }\n}", "app_key is given twice"},
		{"api_rate zero", false, "dingtalk {\n secret s\n api_rate 0\n}", `api_rate: "0" is not a whole number of at least 1`},
		{"max_reply_chars words", false, "dingtalk {\n secret s\n max_reply_chars many\n}", `max_reply_chars: "many" is not a whole number`},
		{"send argument", true, "dingtalk_send alerts", "wrong argument count"},
		{"send unknown", true, "dingtalk_send {\n robot alerts\n}", `unrecognized dingtalk_send subdirective "robot"`},
		{"send bot twice", true, "dingtalk_send {\n bot a\n bot b\n}", "bot is given twice"},
		{"send secret with a space", true, "dingtalk_send {\n secret two words\n}", "secret takes exactly one argument (quote it"},
		{"media mode", true, "dingtalk_media {\n mode stream\n}", `mode: expected redirect or proxy, got "stream"`},
		{"media max_size", true, "dingtalk_media {\n max_size big\n}", "max_size: \"big\" is not a size"},
		{"media unknown", true, "dingtalk_media {\n modes proxy\n}", `unrecognized dingtalk_media subdirective "modes"`},
		{"async no hosts", false, "dingtalk {\n secret s\n async {\n  webhook_hosts\n }\n}", "wrong argument count"},
		// dingtalk_reply
		{"unknown type", true, `dingtalk_reply txt hello`, `unknown type "txt"`},
		{"unknown type in block", true, "dingtalk_reply {\n type image\n}", `unknown type "image"`},
		{"no type", true, "dingtalk_reply {\n text hi\n}", "dingtalk_reply needs a type"},
		{"missing text", true, `dingtalk_reply text`, "a text reply needs a text"},
		{"markdown without text", true, "dingtalk_reply markdown {\n title T\n}", "a markdown reply needs a text"},
		{"markdown shorthand with one argument", true, `dingtalk_reply markdown Title`, "wrong argument count"},
		{"text shorthand with two arguments", true, `dingtalk_reply text a b`, "wrong argument count"},
		{"link shorthand arguments", true, `dingtalk_reply link T body`, "wrong argument count"},
		{"link without url", true, "dingtalk_reply link {\n title T\n text b\n}", "a link reply needs a url"},
		{"at_sender on link", true, "dingtalk_reply link {\n title T\n text b\n url https://example.com\n at_sender\n}", "a link reply cannot @ anyone"},
		{"at_all on feed_card", true, "dingtalk_reply feed_card {\n link T https://example.com https://example.com/p.png\n at_all\n}", "a feed_card reply cannot @ anyone"},
		{"at_sender on empty", true, "dingtalk_reply empty {\n at_sender\n}", "an empty reply cannot @ anyone"},
		{"at_sender with an argument", true, "dingtalk_reply text hi {\n at_sender yes\n}", "wrong argument count"},
		{"field of another type", true, "dingtalk_reply text hi {\n pic https://example.com/p.png\n}", "a text reply takes no pic"},
		{"text given twice", true, "dingtalk_reply text hi {\n text again\n}", "text is given twice"},
		{"type given twice", true, "dingtalk_reply text hi {\n type markdown\n}", "type is given twice"},
		{"unknown subdirective", true, "dingtalk_reply text hi {\n colour red\n}", `unrecognized subdirective "colour"`},
		{"action_card without url or buttons", true, "dingtalk_reply action_card {\n title T\n text b\n}", "either a url"},
		{"button without url", true, "dingtalk_reply action_card {\n title T\n text b\n button Yes\n}", "button needs a title and a url"},
		{"feed_card link without picture", true, "dingtalk_reply feed_card {\n link T https://example.com\n}", "link needs a title, a url and a picture"},
		{"feed_card without links", true, `dingtalk_reply feed_card`, "a feed_card reply needs a link"},
		// the dingtalk matcher
		{"unknown condition", true, "@m dingtalk {\n colour red\n}\nrespond @m 200", `unrecognized condition "colour"`},
		{"repeated condition", true, "@m dingtalk {\n admin\n admin\n}\nrespond @m 200", "admin is given twice"},
		{"repeated across merged matchers", true, "@m {\n dingtalk {\n  text a\n }\n dingtalk {\n  text b\n }\n}\nrespond @m 200", "text is given twice"},
		{"bad regexp", true, "@m dingtalk {\n text (unclosed\n}\nrespond @m 200", "missing closing )"},
		{"text without a pattern", true, "@m dingtalk {\n text\n}\nrespond @m 200", "text takes a regular expression"},
		{"conversation value", true, "@m dingtalk {\n conversation both\n}\nrespond @m 200", `conversation is single or group, not "both"`},
		{"flag with a value", true, "@m dingtalk {\n mentioned yes\n}\nrespond @m 200", "mentioned takes no value"},
		{"list without values", true, "@m dingtalk {\n sender\n}\nrespond @m 200", "sender takes one or more non-empty values"},
		{"arguments instead of a block", true, "@m dingtalk text ^hi\nrespond @m 200", "takes its conditions in a block"},
		{"condition with a block", true, "@m dingtalk {\n admin {\n  yes\n }\n}\nrespond @m 200", "admin takes no block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			site := c.directives
			if c.inRoute {
				site = "route {\n\t\tdingtalk {\n\t\t\tsecret s\n\t\t}\n" + c.directives + "\n\t}"
			}
			caddyfile := ":8080 {\n\t" + site + "\n}\n"
			_, err := adapt(t, caddyfile)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q\n%s", err, c.want, caddyfile)
			}
		})
	}
}

// The Caddyfiles the project ships must keep adapting, and every log of
// those that take callbacks, Caddy's default one first (a failing
// upstream's error prints the request's headers there), drops the Sign
// header: a valid sign is a credential until its timestamp ages out.
func TestShippedCaddyfilesAdaptAndKeepTheSignOutOfLogs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*", "Caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example Caddyfiles: %v", err)
	}
	for _, file := range append(files, filepath.Join("..", "Caddyfile")) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out, err := adapt(t, string(data))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !bytes.Contains(out, []byte(`"handler":"dingtalk"`)) {
			continue // sends only (dingtalk_send): no sign ever comes in
		}
		var cfg struct {
			Logging struct {
				Logs map[string]struct {
					Encoder struct {
						Format string
						Fields map[string]struct{ Filter string }
					}
				}
			}
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		if _, ok := cfg.Logging.Logs["default"]; !ok {
			t.Errorf("%s: Caddy's default log is not configured, so it keeps the Sign header", file)
		}
		for name, log := range cfg.Logging.Logs {
			if log.Encoder.Format != "filter" || log.Encoder.Fields["request>headers>Sign"].Filter != "delete" {
				t.Errorf("%s: log %q does not delete request>headers>Sign (encoder %+v)", file, name, log.Encoder)
			}
		}
	}
}
