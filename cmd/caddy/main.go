// Command caddy is Caddy with its standard modules and the caddy-dingtalk
// modules, for `go build ./cmd/caddy` and `go run ./cmd/caddy` without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-dingtalk/caddy-dingtalk"
)

func main() {
	caddycmd.Main()
}
