package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("dingtalk_media", parseMediaCaddyfile)
	// It answers, like respond; inside a route the written order wins.
	httpcaddyfile.RegisterDirectiveOrder("dingtalk_media", httpcaddyfile.Before, "respond")
}

func parseMediaCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Media
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	dingtalk_media [<matcher>] {
//	    bot <name>
//	    mode redirect|proxy
//	    max_size <size>
//	    secret <appSecret>
//	    app_key <appKey>
//	    robot_code <code>
//	    api_base <url>
//	    api_rate <n>
//	}
//
// The block is optional when exactly one bot with an app_key is configured
// in a dingtalk handler. Unknown and repeated subdirectives are errors.
func (m *Media) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	return m.unmarshalRobotBlock(d, func(sub string) (bool, error) {
		switch sub {
		case "mode":
			value, err := singleArg(d)
			if err == nil && value != mediaRedirect && value != mediaProxy {
				err = d.Errf("mode: expected redirect or proxy, got %q", value)
			}
			m.Mode = value
			return true, err
		case "max_size":
			value, err := singleArg(d)
			if err != nil {
				return true, err
			}
			n, err := humanize.ParseBytes(value)
			if err != nil || n == 0 || n > 1<<40 {
				return true, d.Errf("max_size: %q is not a size such as 20MiB", value)
			}
			m.MaxSize = int64(n)
			return true, nil
		}
		return false, nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Media)(nil)
