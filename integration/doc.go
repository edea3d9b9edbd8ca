// Package integration holds the tests that run a real Caddy with the
// caddy-dingtalk modules in this process. Caddy's configuration is global to
// a process, so every such test lives in this one package and none of them
// runs in parallel.
package integration
