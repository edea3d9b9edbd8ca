// Command go is a DingTalk bot backend behind caddy-dingtalk: net/http and
// this repository's dingtalk package (the protocol, no Caddy).
//
// Caddy's dingtalk handler verified each callback's timestamp and sign before
// passing it on, and this server listens on loopback only, so it trusts what
// arrives: it reads the callback's JSON body and answers with a DingTalk text
// message that @s the sender. X-Dingtalk-Bot names the robot the callback is
// for; Caddy sets it and no client can forge it.
//
//	BACKEND_ADDR=127.0.0.1:9000 go run ./examples/go
package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

func main() {
	// Keep it on loopback: whatever reaches this server is trusted.
	addr := cmp.Or(os.Getenv("BACKEND_ADDR"), "127.0.0.1:9000")
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(serve), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("Go bot backend on http://%s", addr)
	log.Fatal(srv.ListenAndServe())
}

// serve answers a callback with a text message that @s its sender.
func serve(w http.ResponseWriter, r *http.Request) {
	// Caddy's max_body (1MiB by default) bounds what arrives.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body failed", http.StatusBadRequest)
		return
	}
	msg, err := dingtalk.ParseMessage(body)
	if err != nil {
		http.Error(w, "not a DingTalk callback", http.StatusBadRequest)
		return
	}
	got := "[" + msg.MsgType + "]"
	if msg.MsgType == dingtalk.MsgTypeText {
		// In a group, DingTalk leaves a space where it removed "@robot".
		got = msg.TrimmedText()
	}
	reply := dingtalk.NewText(fmt.Sprintf("Hi %s, bot %s (Go) got: %s", msg.SenderNick, r.Header.Get("X-Dingtalk-Bot"), got))
	// @ by staff id, or by DingTalk id for external users (and everyone
	// while the robot is not published), with the id in the text too:
	// DingTalk renders only an @ that the text names.
	if err := reply.MentionSender(msg); err != nil {
		log.Printf("mentioning the sender: %v", err) // cannot happen for a text message
	}
	out, err := json.Marshal(reply)
	if err != nil {
		http.Error(w, "encoding the reply failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(out)
}
