// Package caddydingtalk registers the caddy-dingtalk modules with Caddy, so
// that `xcaddy build --with github.com/caddy-dingtalk/caddy-dingtalk` (or
// `xcaddy build` from this repository's root) includes them. The modules
// themselves live in the caddymodule package; the `caddy dingtalk` command,
// a client of the gateway, in the cli package.
package caddydingtalk

import (
	_ "github.com/caddy-dingtalk/caddy-dingtalk/caddymodule"
	_ "github.com/caddy-dingtalk/caddy-dingtalk/cli"
)
