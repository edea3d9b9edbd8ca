package caddymodule

import (
	"strings"
	"testing"
)

// TestStreamCaddyfileErrors checks that mistakes in the global
// dingtalk_stream block fail `caddy adapt` with a message that says what is
// wrong, and never repeat a secret.
func TestStreamCaddyfileErrors(t *testing.T) {
	const robot = "robot a {\n client_id id\n secret s\n deliver_to http://127.0.0.1:8080/robot\n"
	cases := []struct{ name, block, want string }{
		{"no robot", "", "needs at least one robot"},
		{"argument", "", "wrong argument count"},
		{"unknown subdirective", "robots a\n", `unrecognized dingtalk_stream subdirective "robots"`},
		{"api_base twice", "api_base http://a\napi_base http://b\n" + robot + "}\n", "api_base is given twice"},
		{"robot without name", "robot {\n}\n", "robot needs a name"},
		{"robot twice", robot + "}\n" + robot + "}\n", `robot "a" is configured twice`},
		{"no credentials", "robot a {\n deliver_to http://127.0.0.1/robot\n}\n", `robot "a" needs a client_id and a secret`},
		{"no destination", "robot a {\n client_id id\n secret s\n}\n", `robot "a" needs deliver_to, cards_to or events_to`},
		{"unknown robot subdirective", robot + " deliver http://x\n}\n", `unrecognized robot subdirective "deliver"`},
		{"repeated robot subdirective", robot + " deliver_to http://x\n}\n", "deliver_to is given twice"},
		{"secret with a space", "robot a {\n secret two words\n}\n", "secret takes exactly one argument (quote it"},
		{"single_connection with a value", robot + " single_connection yes\n}\n", "wrong argument count"},
		{"bad lease", robot + " lease soon\n}\n", `lease: "soon" is not a positive duration`},
		{"webhook_hosts empty", robot + " webhook_hosts\n}\n", "wrong argument count"},
		{"unknown store", "store disk\n" + robot + "}\n", "dingtalk.stores.disk"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			option := "dingtalk_stream {\n" + c.block + "}"
			if c.name == "argument" {
				option = "dingtalk_stream now {\n}"
			}
			_, err := adapt(t, "{\n"+option+"\n}\n:8080 {\n\trespond 200\n}\n")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "two words") {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}
