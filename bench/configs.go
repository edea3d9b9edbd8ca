package main

import (
	"fmt"
	"path/filepath"
)

// config is one way of serving the same callbacks, measured against the others.
type config struct {
	name  string // a letter, as BENCHMARKS.md refers to it
	title string
	site  func(peers) string // the site block's content
	// async configurations answer before their work is done: the next
	// measurement waits until the webhook has received every reply.
	async bool
	// redis configurations need the harness's redis-server, and are
	// skipped without one.
	redis bool
	// answer is the body of every answer that counts: an answer with another
	// one (such as the empty reply to a duplicate) fails the run.
	answer string
	// proxied configurations pass every callback on to the upstream: it
	// must have received one request for every answer that counted.
	proxied bool
}

// peers are the harness's local servers a configuration may use.
type peers struct {
	upstream string // host:port of the bot backend
	webhook  string // host:port of the fake sessionWebhook
	redis    string // host:port of redis-server, "" without one
	files    string // a folder for file stores
}

// reply is the root Caddyfile's answer: the text, @-mentioning the sender.
const reply = `dingtalk_reply text "You said: {http.dingtalk.text}" {
			at_sender
		}`

// staticReply is the JSON that reply gives for the harness's callbacks.
const staticReply = `{"msgtype":"text","text":{"content":"You said: hello robot @user123"},"at":{"atUserIds":["user123"]}}`

// emptyReply is DingTalk's "no reply", the async relay's ack.
const emptyReply = `{"msgtype":"empty"}`

// dingtalkHandler is the handler as the README configures it, with options.
func dingtalkHandler(options string) string {
	return fmt.Sprintf(`dingtalk {
			secret %q%s
		}`, secret, options)
}

// configs are measured in this order, rotated by one each round.
var configs = []config{
	{name: "A", title: "reverse_proxy (baseline)", answer: upstreamAnswer, proxied: true, site: func(p peers) string {
		return route("reverse_proxy " + p.upstream)
	}},
	{name: "B", title: "dingtalk + reverse_proxy", answer: upstreamAnswer, proxied: true, site: func(p peers) string {
		return route(dingtalkHandler(""), "reverse_proxy "+p.upstream)
	}},
	{name: "C", title: "dingtalk + dingtalk_reply", answer: staticReply, site: func(peers) string {
		return route(dingtalkHandler(""), reply)
	}},
	{name: "D", title: "respond static JSON (ceiling)", answer: staticReply, site: func(peers) string {
		return route(`header Content-Type "application/json; charset=utf-8"`, "respond `"+staticReply+"` 200")
	}},
	// E's ack is the empty reply, as a duplicate's is: the webhook must
	// receive the reply of every ack.
	{name: "E", title: "dingtalk async + dingtalk_reply", async: true, answer: emptyReply, site: func(p peers) string {
		return route(dingtalkHandler(fmt.Sprintf(`
			async {
				webhook_hosts %s
			}`, p.webhook)), reply)
	}},
	{name: "F", title: "B, remembering in Redis", redis: true, answer: upstreamAnswer, proxied: true, site: func(p peers) string {
		return route(dingtalkHandler(fmt.Sprintf(`
			store redis {
				address %s
			}`, p.redis)), "reverse_proxy "+p.upstream)
	}},
	{name: "G", title: "B, remembering in a file", answer: upstreamAnswer, proxied: true, site: func(p peers) string {
		return route(dingtalkHandler(fileStore(p, "G", "")), "reverse_proxy "+p.upstream)
	}},
	{name: "H", title: "E, its jobs in a file", async: true, answer: emptyReply, site: func(p peers) string {
		return route(dingtalkHandler(fileStore(p, "H", "")+fmt.Sprintf(`
			async {
				webhook_hosts %s
			}`, p.webhook)), reply)
	}},
	{name: "I", title: "G with fsync on", answer: upstreamAnswer, proxied: true, site: func(p peers) string {
		return route(dingtalkHandler(fileStore(p, "I", "fsync on")), "reverse_proxy "+p.upstream)
	}},
	{name: "J", title: "E, its jobs in Redis", async: true, redis: true, answer: emptyReply, site: func(p peers) string {
		return route(dingtalkHandler(fmt.Sprintf(`
			store redis {
				address %s
			}
			async {
				webhook_hosts %s
			}`, p.redis, p.webhook)), reply)
	}},
}

// fileStore is the option of a file store of its own for configuration
// name, with options.
func fileStore(p peers, name, options string) string {
	return fmt.Sprintf(`
			store file {
				path %s
				%s
			}`, filepath.Join(p.files, name+".db"), options)
}

// route puts handlers in a route, in the order given.
func route(handlers ...string) string {
	s := "\troute /robot {\n"
	for _, h := range handlers {
		s += "\t\t" + h + "\n"
	}
	return s + "\t}"
}
