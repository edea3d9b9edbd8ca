package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store redis {
//	    address <host:port>       # or: url redis://... (rediss:// for TLS)
//	    password <password>
//	    db <n>
//	    key_prefix <prefix>
//	    timeout <duration>
//	    on_error open|closed
//	}
//
// Unknown and repeated subdirectives are errors, and so are address and url together.
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	seen := map[string]bool{}
	err := eachSubdirectiveOnce(d, seen, func(sub string) (err error) {
		if seen["address"] && seen["url"] {
			return d.Err("give either address or url, not both")
		}
		switch sub {
		case "address":
			s.Address, err = singleArg(d)
		case "url":
			s.URL, err = secretArg(d)
		case "password":
			s.Password, err = secretArg(d)
		case "db":
			var value string
			if value, err = singleArg(d); err == nil {
				if s.DB, err = strconv.Atoi(value); err != nil || s.DB < 0 {
					return d.Errf("db: %q is not a database number", value)
				}
			}
		case "key_prefix":
			s.KeyPrefix, err = singleArg(d)
		case "timeout":
			err = durationArg(d, &s.Timeout)
		case "on_error":
			if s.OnError, err = singleArg(d); err == nil && s.OnError != redisOnErrorOpen && s.OnError != redisOnErrorClosed {
				return d.Errf("on_error: expected open or closed, got %q", s.OnError)
			}
		default:
			return d.Errf("unrecognized redis store subdirective %q", sub)
		}
		return err
	})
	if err != nil {
		return err
	}
	if !seen["address"] && !seen["url"] {
		return d.Err("the redis store needs an address or a url")
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*RedisStore)(nil)
