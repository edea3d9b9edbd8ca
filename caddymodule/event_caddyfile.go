package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("dingtalk_event", parseEventHandlerCaddyfile)
	// As dingtalk: a forgery costs a hash and reaches nothing.
	httpcaddyfile.RegisterDirectiveOrder("dingtalk_event", httpcaddyfile.Before, "basic_auth")
}

func parseEventHandlerCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler EventHandler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	dingtalk_event [<matcher>] {
//	    token <token>
//	    aes_key <43 characters>
//	    owner_key <appKey|suiteKey|corpId>
//	    max_age <duration>
//	    max_future <duration>
//	    max_body <size>
//	    dedupe off|<ttl>
//	    lease <duration>
//	    store <backend> {
//	        ...
//	    }
//	}
//
// token, aes_key and owner_key are required. Unknown and repeated
// subdirectives are errors.
func (h *EventHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	seen := map[string]bool{}
	err := eachSubdirectiveOnce(d, seen, func(sub string) (err error) {
		switch sub {
		case "token":
			h.Token, err = secretArg(d)
		case "aes_key":
			h.AESKey, err = secretArg(d)
		case "owner_key":
			h.OwnerKey, err = singleArg(d)
		case "max_age":
			err = durationArg(d, &h.MaxAge)
		case "max_future":
			err = durationArg(d, &h.MaxFuture)
		case "lease":
			err = durationArg(d, &h.Lease)
		case "max_body":
			h.MaxBody, err = sizeArg(d)
		case "dedupe":
			h.Dedupe, err = dedupeArg(d)
		case "store":
			h.StoreRaw, err = unmarshalStoreModule(d)
		default:
			return d.Errf("unrecognized subdirective %q", sub)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, required := range []string{"token", "aes_key", "owner_key"} {
		if !seen[required] {
			return d.Errf("dingtalk_event needs %s", required)
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*EventHandler)(nil)
