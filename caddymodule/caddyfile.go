package caddymodule

import (
	"encoding/json"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("dingtalk", parseHandlerCaddyfile)
	// Verification comes before any auth or handler that could contact
	// another service, and before every handler that answers: a forgery
	// costs one hash and reaches nothing.
	httpcaddyfile.RegisterDirectiveOrder("dingtalk", httpcaddyfile.Before, "basic_auth")
}

func parseHandlerCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	dingtalk [<matcher>] {
//	    secret <appSecret>
//	    app_key <appKey>
//	    bot <name> <appSecret> {
//	        robot_code <code>
//	        app_key <appKey>
//	    }
//	    api_base <url>
//	    api_rate <n>
//	    max_reply_chars <n>
//	    max_age <duration>
//	    max_future <duration>
//	    max_body <size>
//	    dedupe off|<ttl>
//	    lease <duration>
//	    replay_guard on|off
//	    replay_grace <duration>
//	    forward_sign on|off
//	    log_text on|off
//	    store <backend> {
//	        ...
//	    }
//	    async {
//	        ...
//	    }
//	}
//
// Unknown and repeated subdirectives are errors; only bot may repeat.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	seen := map[string]bool{}
	shorthandAppKey := ""
	err := eachSubdirectiveOnce(d, seen, func(sub string) (err error) {
		switch sub {
		case "secret":
			var secret string
			if secret, err = secretArg(d); err == nil {
				h.Bots = append(h.Bots, Bot{Name: defaultBotName, Secret: secret})
			}
		case "bot":
			err = h.unmarshalBot(d)
		case "app_key":
			shorthandAppKey, err = singleArg(d)
		case "api_base":
			h.APIBase, err = singleArg(d)
		case "api_rate":
			h.APIRate, err = countArg(d, 1)
		case "max_reply_chars":
			h.MaxReplyChars, err = countArg(d, 1)
		case "max_age":
			err = durationArg(d, &h.MaxAge)
		case "max_future":
			err = durationArg(d, &h.MaxFuture)
		case "max_body":
			h.MaxBody, err = sizeArg(d)
		case "dedupe":
			h.Dedupe, err = dedupeArg(d)
		case "replay_guard":
			var on bool
			if on, err = onOffArg(d); err == nil {
				h.ReplayGuard = &on
			}
		case "lease":
			err = durationArg(d, &h.Lease)
		case "replay_grace":
			err = durationArg(d, &h.ReplayGrace)
		case "forward_sign":
			var on bool
			if on, err = onOffArg(d); err == nil {
				h.ForwardSign = &on
			}
		case "log_text":
			h.LogText, err = onOffArg(d)
		case "store":
			err = h.unmarshalStore(d)
		case "async":
			err = h.unmarshalAsync(d)
		default:
			err = d.Errf("unrecognized subdirective %q", sub)
		}
		return err
	}, "bot")
	if err != nil {
		return err
	}
	if len(h.Bots) == 0 {
		return d.Err("dingtalk needs at least one secret: `secret <appSecret>` or `bot <name> <appSecret>`")
	}
	if shorthandAppKey != "" {
		if !seen["secret"] {
			return d.Err("app_key goes with `secret`; a bot block takes its own app_key")
		}
		for i := range h.Bots {
			if h.Bots[i].Name == defaultBotName {
				h.Bots[i].AppKey = shorthandAppKey
			}
		}
	}
	return nil
}

// unmarshalBot parses `bot <name> <appSecret> { robot_code <code> }`.
func (h *Handler) unmarshalBot(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Err("bot needs a name and a secret: bot <name> <appSecret>")
	}
	b := Bot{Name: args[0], Secret: args[1]}
	err := eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) (err error) {
		switch sub {
		case "robot_code":
			b.RobotCode, err = singleArg(d)
		case "app_key":
			b.AppKey, err = singleArg(d)
		default:
			err = d.Errf("unrecognized bot subdirective %q", sub)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, other := range h.Bots {
		if other.Name == b.Name {
			return d.Errf("bot %q is configured twice", b.Name)
		}
	}
	h.Bots = append(h.Bots, b)
	return nil
}

// unmarshalStore parses `store <backend> { ... }` with the backend module's
// own Caddyfile syntax.
func (h *Handler) unmarshalStore(d *caddyfile.Dispenser) error {
	raw, err := unmarshalStoreModule(d)
	h.StoreRaw = raw
	return err
}

// unmarshalStoreModule parses `store <backend> { ... }` into the store's
// JSON module object, for the dingtalk handler and the dingtalk_stream app.
func unmarshalStoreModule(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	backend := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "dingtalk.stores."+backend)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "backend", backend, nil), nil
}

// sizeArg reads the one size argument of max_body, such as 1MiB.
func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	size, err := singleArg(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(size)
	if err != nil || n == 0 || n > maxMaxBody {
		return 0, d.Errf("%s: %q is not a size such as 1MiB", name, size)
	}
	return int64(n), nil
}

// eachSubdirectiveOnce reads the block of a directive whose arguments were
// just read: no further argument, then each subdirective, marked in seen
// (which the caller may consult, in parse too) and handed to parse. A
// subdirective given twice is an error, except those in mayRepeat.
func eachSubdirectiveOnce(d *caddyfile.Dispenser, seen map[string]bool, parse func(sub string) error, mayRepeat ...string) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && !slices.Contains(mayRepeat, sub) {
			return d.Errf("%s is given twice", sub)
		}
		seen[sub] = true
		if err := parse(sub); err != nil {
			return err
		}
	}
	return nil
}

// singleArg reads exactly one argument.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	value := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return value, nil
}

// secretArg reads exactly one argument without echoing it in the error: a
// secret or password (or a URL that holds one) written with a space must not end up in
// the log through an "unexpected argument" message.
func secretArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return "", d.Errf("%s takes exactly one argument (quote it if it contains spaces)", name)
	}
	return args[0], nil
}

// durationArg reads the one duration argument of the current subdirective.
func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	value, err := singleArg(d)
	if err != nil {
		return err
	}
	return parseDuration(d, name, value, dst)
}

// parseDuration parses a positive duration such as 90s or 1h given to name.
func parseDuration(d *caddyfile.Dispenser, name, value string, dst *caddy.Duration) error {
	dur, err := caddy.ParseDuration(value)
	if err != nil || dur <= 0 {
		return d.Errf("%s: %q is not a positive duration such as 90s or 1h", name, value)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// dedupeArg reads `dedupe off|<ttl>`, as the dedupe field has it.
func dedupeArg(d *caddyfile.Dispenser) (string, error) {
	value, err := singleArg(d)
	if err == nil && value != "off" {
		var ttl caddy.Duration
		err = parseDuration(d, "dedupe", value, &ttl)
	}
	return value, err
}

// onOffArg reads one on/off argument.
func onOffArg(d *caddyfile.Dispenser) (bool, error) {
	value, err := singleArg(d)
	if err != nil {
		return false, err
	}
	switch value {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("expected on or off, got %q", value)
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
