package main

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// peer is a local HTTP server standing in for a bot backend or for
// DingTalk's sessionWebhook: it reads each request, counts it and answers
// with a fixed small JSON body. It keeps nothing else, so that it costs the
// load generator's cores as little as possible (dingtalktest's Recorder
// keeps every request, which a load of hundreds of thousands cannot afford).
type peer struct {
	Addr   string // host:port on 127.0.0.1
	served atomic.Int64
	srv    *http.Server
}

// Answers of the peers.
const (
	upstreamAnswer = `{"msgtype":"text","text":{"content":"ok"}}`
	webhookAnswer  = `{"errcode":0,"errmsg":"ok"}` // DingTalk's answer to an accepted post
)

// startPeer serves answer on a free loopback port.
func startPeer(answer string) (*peer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &peer{Addr: ln.Addr().String()}
	body := []byte(answer)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(body)
		p.served.Add(1)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Served counts the requests answered so far.
func (p *peer) Served() int64 { return p.served.Load() }

func (p *peer) Close() { _ = p.srv.Close() }
