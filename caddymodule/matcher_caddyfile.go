package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	@name dingtalk {
//	    text [<name>] <regexp>
//	    msgtype <type...>
//	    conversation single|group
//	    conversation_id <id...>
//	    sender <staffId...>
//	    bot <name...>
//	    admin
//	    mentioned
//	}
//
// Without a block it matches every verified callback. The captures of text
// are named after the named matcher unless a name is given. Unknown and
// repeated conditions are errors, also across several `dingtalk` matchers in
// one named matcher, which Caddy merges.
func (m *MatchDingTalk) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	name := d.GetContextString(caddyfile.MatcherNameCtxKey)
	seen := map[string]bool{}
	for d.Next() { // once per `dingtalk` in the named matcher
		if d.NextArg() {
			return d.Err("the dingtalk matcher takes its conditions in a block")
		}
		err := eachSubdirectiveOnce(d, seen, func(key string) error {
			if err := m.set(key, d.RemainingArgs(), name); err != nil {
				return d.Err(err.Error())
			}
			if d.NextBlock(d.Nesting()) {
				return d.Errf("%s takes no block", key)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*MatchDingTalk)(nil)
