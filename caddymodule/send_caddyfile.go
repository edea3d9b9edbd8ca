package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("dingtalk_send", parseSendCaddyfile)
	// It answers, like respond; inside a route the written order wins.
	httpcaddyfile.RegisterDirectiveOrder("dingtalk_send", httpcaddyfile.Before, "respond")
}

func parseSendCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var s Send
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return &s, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	dingtalk_send [<matcher>] {
//	    bot <name>
//	    secret <appSecret>
//	    app_key <appKey>
//	    robot_code <code>
//	    api_base <url>
//	    api_rate <n>
//	    max_reply_chars <n>
//	}
//
// The block is optional when exactly one bot with an app_key is configured
// in a dingtalk handler. Unknown and repeated subdirectives are errors.
func (s *Send) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	return s.unmarshalRobotBlock(d, func(sub string) (bool, error) {
		if sub != "max_reply_chars" {
			return false, nil
		}
		var err error
		s.MaxReplyChars, err = countArg(d, 1)
		return true, err
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Send)(nil)
