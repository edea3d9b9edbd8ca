// Package processes holds the tests that run the built caddy binary as
// separate processes, next to a real redis-server, loopback backends and a
// fake sessionWebhook, and kill or stop them as a crash or a deploy would:
// what the gateway promises (every accepted message answered once) must
// hold across processes, not only within one.
package processes
