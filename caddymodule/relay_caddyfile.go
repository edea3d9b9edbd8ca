package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalAsync parses the dingtalk handler's async block:
//
//	async {
//	    timeout <duration>
//	    workers <n>
//	    queue <n>
//	    webhook_hosts <host...>
//	    webhook_timeout <duration>
//	    webhook_retries <n>
//	    fallback_text <text>
//	    drain <duration>
//	    max_attempts <n>
//	    card { ... }    (relay_card_caddyfile.go)
//	}
func (h *Handler) unmarshalAsync(d *caddyfile.Dispenser) error {
	a := new(Async)
	err := eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) (err error) {
		switch sub {
		case "timeout":
			err = durationArg(d, &a.Timeout)
		case "webhook_timeout":
			err = durationArg(d, &a.WebhookTimeout)
		case "workers":
			a.Workers, err = countArg(d, 1)
		case "queue":
			a.Queue, err = countArg(d, 1)
		case "webhook_retries":
			var n int
			if n, err = countArg(d, 0); err == nil {
				a.WebhookRetries = &n
			}
		case "webhook_hosts":
			if a.WebhookHosts = d.RemainingArgs(); len(a.WebhookHosts) == 0 {
				err = d.ArgErr()
			}
		case "fallback_text":
			a.FallbackText, err = singleArg(d)
		case "drain":
			err = durationArg(d, &a.Drain)
		case "max_attempts":
			a.MaxAttempts, err = countArg(d, 1)
		case "card":
			a.Card, err = unmarshalCard(d)
		default:
			err = d.Errf("unrecognized async subdirective %q", sub)
		}
		return err
	})
	h.Async = a
	return err
}

// countArg reads the current subdirective's one whole number, at least least.
func countArg(d *caddyfile.Dispenser, least int) (int, error) {
	name := d.Val()
	value, err := singleArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < least {
		return 0, d.Errf("%s: %q is not a whole number of at least %d", name, value, least)
	}
	return n, nil
}
