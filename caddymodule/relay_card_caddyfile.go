package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalCard parses the async block's card subdirective:
//
//	card {
//	    template <cardTemplateId>
//	    key <name>
//	    interval <duration>
//	    max_chars <n>
//	    overflow card|messages
//	    always
//	}
//
// `card` alone takes every default.
func unmarshalCard(d *caddyfile.Dispenser) (*AsyncCard, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(AsyncCard)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return nil, d.Errf("card: %s is given twice", sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "template":
			c.Template, err = singleArg(d)
		case "key":
			c.Key, err = singleArg(d)
		case "interval":
			err = durationArg(d, &c.Interval)
		case "max_chars":
			c.MaxChars, err = countArg(d, 1)
		case "overflow":
			if c.Overflow, err = singleArg(d); err == nil && c.Overflow != overflowCard && c.Overflow != overflowMessages {
				return nil, d.Errf("card: overflow must be %q or %q, not %q", overflowCard, overflowMessages, c.Overflow)
			}
		case "always":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Always = true
		default:
			return nil, d.Errf("unrecognized card subdirective %q", sub)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}
