// Package dingtalk implements the parts of DingTalk's enterprise robot
// protocol that hold whatever server runs them: the callback sign and its time
// window, the inbound message and a tolerant parser, the outbound message
// types, and the sessionWebhook client with its URL policy.
//
// It does not import Caddy, so Go bot backends, command-line tools and tests
// can use it directly.
package dingtalk
