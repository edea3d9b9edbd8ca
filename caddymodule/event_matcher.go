package caddymodule

import (
	"errors"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(MatchDingTalkEvent{})
}

// MatchDingTalkEvent matches requests that carry an event the
// dingtalk_event handler verified earlier in the same route, by the
// event's type. A request the handler did not verify never matches.
type MatchDingTalkEvent struct {
	// The event types (EventType) that match, such as user_add_org or
	// bpms_instance_change. Without any, every verified event matches.
	Types []string `json:"type,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (MatchDingTalkEvent) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.dingtalk_event",
		New: func() caddy.Module { return new(MatchDingTalkEvent) },
	}
}

// Validate refuses empty types, which no event has.
func (m *MatchDingTalkEvent) Validate() error {
	if slices.Contains(m.Types, "") {
		return errors.New("dingtalk_event matcher: type has an empty value")
	}
	return nil
}

// MatchWithError reports whether r carries a verified event of one of the types.
func (m *MatchDingTalkEvent) MatchWithError(r *http.Request) (bool, error) {
	v, ok := EventFrom(r.Context())
	if !ok {
		return false, nil
	}
	return len(m.Types) == 0 || slices.Contains(m.Types, v.Event.Type), nil
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	@name dingtalk_event {
//	    type <EventType...>
//	}
//
// Without a block it matches every verified event.
func (m *MatchDingTalkEvent) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() { // once per dingtalk_event in the named matcher
		if d.NextArg() {
			return d.Err("the dingtalk_event matcher takes its conditions in a block")
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			key := d.Val()
			if key != "type" {
				return d.Errf("unrecognized condition %q", key)
			}
			if m.Types != nil {
				return d.Err("type is given twice")
			}
			if err := atLeastOne(key, d.RemainingArgs(), &m.Types); err != nil {
				return d.Err(err.Error())
			}
			if d.NextBlock(d.Nesting()) {
				return d.Errf("%s takes no block", key)
			}
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Validator                   = (*MatchDingTalkEvent)(nil)
	_ caddyhttp.RequestMatcherWithError = (*MatchDingTalkEvent)(nil)
	_ caddyfile.Unmarshaler             = (*MatchDingTalkEvent)(nil)
)
