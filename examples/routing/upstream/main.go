// Command upstream is a tiny robot backend for the routing example. It
// answers every callback with a DingTalk text message that names the
// upstream, quotes the text and @s the sender. Run one per role:
//
//	go run ./examples/routing/upstream -addr 127.0.0.1:9001 -name weather
//	go run ./examples/routing/upstream -addr 127.0.0.1:9002 -name ask
//
// It does not check the sign: Caddy's dingtalk handler did, and the
// upstream listens on loopback only, so nothing else reaches it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "the loopback address to listen on")
	name := flag.String("name", "weather", "the name this upstream answers with")
	flag.Parse()

	srv := &http.Server{
		Addr:              *addr,
		Handler:           handler(*name),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Printf("upstream %q listening on %s", *name, *addr)
	log.Fatal(srv.ListenAndServe())
}

// handler answers a callback forwarded by Caddy with a text reply.
func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "reading the body failed", http.StatusBadRequest)
			return
		}
		msg, err := dingtalk.ParseMessage(body)
		if err != nil {
			http.Error(w, "not a DingTalk callback", http.StatusBadRequest)
			return
		}
		text := fmt.Sprintf("[%s] you said %q", name, msg.TrimmedText())
		if arg := r.Header.Get("X-Command-Arg"); arg != "" {
			text += fmt.Sprintf(" (argument %q)", arg)
		}
		reply := dingtalk.NewText(text)
		if err := reply.MentionSender(msg); err != nil {
			log.Printf("mentioning the sender: %v", err) // cannot happen for a text reply
		}
		log.Printf("%s: answering msgId %s", name, msg.MsgID)
		out, err := json.Marshal(reply)
		if err != nil {
			http.Error(w, "encoding the reply failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(out)
	})
}
