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
	c := new(AsyncCard)
	err := eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) (err error) {
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
				err = d.Errf("card: overflow must be %q or %q, not %q", overflowCard, overflowMessages, c.Overflow)
			}
		case "always":
			c.Always, err = true, noArgs(d)
		default:
			err = d.Errf("unrecognized card subdirective %q", sub)
		}
		return err
	})
	return c, err
}
