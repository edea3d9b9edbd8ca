// Package examples holds runnable examples of caddy-dingtalk, one folder
// each: a Caddyfile, a bot backend (or none) and a README. Its test runs
// every example the way its README does, as separate processes: a Caddy
// binary built from ./cmd/caddy, the backends with python3, node or Go,
// and `caddy dingtalk send` playing DingTalk.
package examples
