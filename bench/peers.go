package main

import (
	"bytes"
	"fmt"
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
	// With an expected body, the requests with another one are counted
	// apart, and the first of them kept.
	expect    []byte
	wrong     atomic.Int64
	wrongBody atomic.Pointer[string]
	srv       *http.Server
}

// Answers of the peers.
const (
	upstreamAnswer = `{"msgtype":"text","text":{"content":"ok"}}`
	webhookAnswer  = `{"errcode":0,"errmsg":"ok"}` // DingTalk's answer to an accepted post
)

// startPeer serves answer on a free loopback port. With expect, it checks
// that every request's body is expect.
func startPeer(answer, expect string) (*peer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &peer{Addr: ln.Addr().String()}
	if expect != "" {
		p.expect = []byte(expect)
	}
	body := []byte(answer)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.expect == nil {
			_, _ = io.Copy(io.Discard, r.Body)
		} else if got, _ := io.ReadAll(r.Body); !bytes.Equal(got, p.expect) {
			if p.wrong.Add(1) == 1 {
				first := string(got)
				p.wrongBody.Store(&first)
			}
		}
		// Counted before it answers: whoever got the answer sees the count.
		p.served.Add(1)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(body)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Served counts the requests received so far.
func (p *peer) Served() int64 { return p.served.Load() }

// checkBodies returns an error when a request's body was not the expected one.
func (p *peer) checkBodies(what string) error {
	if n := p.wrong.Load(); n > 0 {
		return fmt.Errorf("%s: %d requests were not the expected %q; the first: %.200q", what, n, p.expect, *p.wrongBody.Load())
	}
	return nil
}

func (p *peer) Close() { _ = p.srv.Close() }
