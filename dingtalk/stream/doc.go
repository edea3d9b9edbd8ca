// Package stream is a client of DingTalk's Stream mode: the robot opens a
// WebSocket to DingTalk, which then delivers robot messages, card callbacks
// and events over it, so the robot needs no public URL.
//
// A Client opens a connection (POST /v1.0/gateway/connections/open with the
// app's credentials and the topics it subscribes to), connects the WebSocket
// with the one-time ticket it got, acks every frame, answers DingTalk's ping
// frames, reconnects with a new ticket on a disconnect frame, and after a
// dropped socket or a failed open waits a jittered, exponentially growing
// back-off that resets once a connection stayed up for a while.
//
// Like package dingtalk, it does not import Caddy. It never logs, and its
// errors never contain the app secret or a ticket.
package stream
