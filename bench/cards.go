package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The streamed answers of -cards: an LLM that thinks, then writes tokens.
const (
	cardAppKey   = "dingbenchcardapp"
	cardInterval = 300 * time.Millisecond
	cardAPIRate  = 20
	cardThink    = 200 * time.Millisecond // headers first, then this long until the first token
	cardToken    = "token42 "             // 8 bytes of text, in an OpenAI chunk of about 70
	cardTokenGap = 20 * time.Millisecond
)

// streamer is the -cards backend: it answers each callback with an
// OpenAI-style event stream and notes when its first token left, by
// conversation.
type streamer struct {
	tokens  int
	srv     *http.Server
	addr    string
	written atomic.Int64 // bytes of body streamed
	mu      sync.Mutex
	first   map[string]time.Time // conversationId → the first token's flush
}

func startStreamer(tokens int) (*streamer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &streamer{tokens: tokens, addr: ln.Addr().String(), first: map[string]time.Time{}}
	chunk, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{"content": cardToken}}}})
	event := []byte("data: " + string(chunk) + "\n\n")
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m dingtalk.Message
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(cardThink) // the model thinking: this is the backend's pace, not a synchronisation
		for i := range s.tokens {
			n, err := w.Write(event)
			s.written.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if i == 0 {
				s.mu.Lock()
				s.first[m.ConversationID] = time.Now()
				s.mu.Unlock()
			}
			time.Sleep(cardTokenGap)
		}
		n, _ := w.Write([]byte("data: [DONE]\n\n"))
		s.written.Add(int64(n))
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// runCards measures streamed answers shown as AI cards, against the fake
// OpenAPI: the time from the backend's first token to the card's first
// update, Caddy's CPU per streamed kilobyte, and the calls per second
// DingTalk sees against the robot's api_rate.
func runCards(env environment) error {
	o := env.o
	api := dingtalktest.NewOpenAPI(dingtalktest.OpenAPIApp{AppKey: cardAppKey, AppSecret: secret})
	defer api.Close()
	backend, err := startStreamer(o.cardTokens)
	if err != nil {
		return err
	}
	defer func() { _ = backend.srv.Close() }()
	site := route(dingtalkHandler(fmt.Sprintf(`
			app_key %s
			api_base %s
			api_rate %d
			async {
				card {
					interval %s
				}
			}`, cardAppKey, api.URL, cardAPIRate, cardInterval)), "reverse_proxy "+backend.addr)
	p, err := startCaddy(env.bin, env.dir, "cards", site, env.cpus, false)
	if err != nil {
		return err
	}
	defer p.Stop()

	fmt.Printf("cards:    %d streams of %d tokens (%d bytes of text each, a token every %v after %v of thought), interval %v, api_rate %d\n\n",
		o.cardStreams, o.cardTokens, o.cardTokens*len(cardToken), cardTokenGap, cardThink, cardInterval, cardAPIRate)
	for _, concurrency := range []int{1, o.cardConcurrency} {
		if err := cardPhase(env, p, api, backend, concurrency); err != nil {
			return err
		}
	}
	return nil
}

// cardPhase sends o.cardStreams callbacks, concurrency at a time, waits for
// their cards to finish, and prints what it measured.
func cardPhase(env environment, p *caddyProc, api *dingtalktest.OpenAPI, backend *streamer, concurrency int) error {
	o := env.o
	before := len(api.Cards())
	callsBefore := len(api.Requests())
	writtenBefore := backend.written.Load()
	cpuBefore, err := cpuSeconds(p.Pid())
	if err != nil {
		return err
	}
	start := time.Now()
	sem := make(chan struct{}, concurrency)
	errs := make(chan error, o.cardStreams)
	var wg sync.WaitGroup
	for i := range o.cardStreams {
		conv := fmt.Sprintf("cidBench%d-%d-%d", concurrency, i, start.UnixNano())
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs <- askForCard(env.ctx, p.Addr, conv, api, before)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	cpuAfter, err := cpuSeconds(p.Pid())
	if err != nil {
		return err
	}

	var delays []time.Duration
	updates := 0
	for _, c := range api.Cards()[before:] {
		conv := strings.TrimPrefix(c.OpenSpaceID, "dtv1.card//IM_GROUP.")
		backend.mu.Lock()
		first := backend.first[conv]
		backend.mu.Unlock()
		if len(c.Updates) == 0 || first.IsZero() {
			return fmt.Errorf("card of %s: no update or no first token", conv)
		}
		delays = append(delays, c.Updates[0].At.Sub(first))
		updates += len(c.Updates)
	}
	slices.Sort(delays)
	kb := float64(backend.written.Load()-writtenBefore) / 1024
	fmt.Printf("%d at a time: %d cards finished in %v, %d updates\n", concurrency, o.cardStreams, elapsed.Round(time.Millisecond), updates)
	fmt.Printf("  first token -> first card update: median %v, p90 %v, max %v (target: median <= interval + 20ms = %v)\n",
		percentile(delays, 50).Round(100*time.Microsecond), percentile(delays, 90).Round(100*time.Microsecond),
		delays[len(delays)-1].Round(100*time.Microsecond), cardInterval+20*time.Millisecond)
	fmt.Printf("  Caddy CPU: %.2f ms per streamed KB (%.0f KB of events, %.2f s of CPU)\n", (cpuAfter-cpuBefore)*1000/kb, kb, cpuAfter-cpuBefore)
	fmt.Printf("  DingTalk saw at most %d calls in one second (%d card updates), api_rate %d; %d calls in all\n\n",
		maxPerSecondSince(api, callsBefore, ""), maxPerSecondSince(api, callsBefore, dingtalktest.OpenAPICardStreamingPath),
		cardAPIRate, len(api.Requests())-callsBefore)
	return nil
}

// askForCard sends one callback from conversation conv and waits until its
// card is finished.
func askForCard(ctx context.Context, addr, conv string, api *dingtalktest.OpenAPI, skip int) error {
	m := dingtalktest.Callback{Text: "stream me an answer", Group: true}.Message()
	m.ConversationID = conv
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := dingtalktest.NewRequest("http://"+addr+"/robot", secret, body, time.Now())
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the gateway answered %d", resp.StatusCode)
	}
	deadline := time.After(2 * time.Minute)
	for {
		changed := api.CardsChanged()
		for _, c := range api.Cards()[skip:] {
			if c.OpenSpaceID == "dtv1.card//IM_GROUP."+conv {
				switch c.State() {
				case "3":
					return nil
				case "5":
					return errors.New("a card failed")
				}
			}
		}
		select {
		case <-changed:
		case <-deadline:
			return fmt.Errorf("the card of %s did not finish within 2 minutes", conv)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maxPerSecondSince is the most calls to path (every API call but the
// token's when empty) within one calendar second, among the requests from
// index from on.
func maxPerSecondSince(api *dingtalktest.OpenAPI, from int, path string) int {
	perSecond := map[int64]int{}
	best := 0
	for _, r := range api.Requests()[from:] {
		p := strings.SplitN(r.Path, "?", 2)[0]
		if path == "" && p == dingtalktest.OpenAPITokenPath || path != "" && p != path {
			continue
		}
		perSecond[r.At.Unix()]++
		best = max(best, perSecond[r.At.Unix()])
	}
	return best
}
