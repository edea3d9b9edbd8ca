package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The Stream comparison: the same dingtalk + dingtalk_reply route, fed by
// the dingtalk_stream app from a fake Stream server (its answer going to a
// fake sessionWebhook) or fed over HTTP (its answer in the response).
const (
	streamClientID = "dingbenchkey"
	// streamRoute answers with the msgId, so that each answer is checked
	// to be the one of its message.
	streamRouteReply = `dingtalk_reply text "pong {http.dingtalk.msg_id}"`
	// streamAnswerWait bounds the wait for one answer.
	streamAnswerWait = 10 * time.Second
)

// runStream measures messages per second and latency through the Stream
// bridge against the same route over HTTP, in alternating periods.
func runStream(env environment) error {
	fake := dingtalktest.NewStreamServer(streamClientID, secret)
	defer fake.Close()
	hook, err := startAnswerHook()
	if err != nil {
		return err
	}
	defer hook.close()
	global := fmt.Sprintf(`dingtalk_stream {
		api_base %s
		robot bench {
			client_id %s
			secret %q
			deliver_to http://SITE_ADDR/robot
			webhook_hosts %s
		}
	}`, fake.URL, streamClientID, secret, hook.addr)
	// /robot-async is the same route in the relay's async mode: like the
	// bridge, it answers through the sessionWebhook.
	site := route(dingtalkHandler(""), streamRouteReply) + fmt.Sprintf(`
	route /robot-async {
		%s
		%s
	}`, dingtalkHandler(fmt.Sprintf(`
			async {
				webhook_hosts %s
			}`, hook.addr)), streamRouteReply)
	p, err := startCaddyWith(env.bin, env.dir, "stream", global, site, env.cpus, env.o.profile != "")
	if err != nil {
		return err
	}
	defer p.Stop()
	ctx, cancel := context.WithTimeout(env.ctx, 30*time.Second)
	err = fake.WaitConnected(ctx, 1)
	cancel()
	if err != nil {
		return fmt.Errorf("caddy did not connect to the fake Stream server: see %s.out", p.Log)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: env.o.conns}}
	modes := []streamMode{
		{name: "HTTP", send: func(id string) error { return sendHTTP(client, p.Addr, id, hook) }},
		{name: "Stream", send: func(id string) error { return sendStream(env.ctx, fake, id, hook) }},
		{name: "HTTP-async", send: func(id string) error { return sendHTTPAsync(client, p.Addr, id, hook) }},
	}
	fmt.Printf("%d rounds; in each, every way gets %v of warm-up and %v measured, in turn; %d messages in flight\n",
		env.o.rounds, env.o.warmup, env.o.duration, env.o.conns)
	results := map[string][]drive{}
	var ratios, asyncRatios []float64
	for round := range env.o.rounds {
		line := fmt.Sprintf("round %2d:", round+1)
		rates := map[string]float64{}
		for i := range modes {
			m := modes[(i+round)%len(modes)]
			profiling := ""
			if env.o.profile != "" && round == env.o.rounds-1 {
				profiling = "stream-" + m.name
			}
			d, err := drivePeriod(env, p, profiling, m.send)
			if err != nil {
				return err
			}
			if err := env.ctx.Err(); err != nil {
				return fmt.Errorf("stopped: %v", err)
			}
			if d.failed > 0 {
				return fmt.Errorf("%s: %d messages failed or got a wrong answer: %v", m.name, d.failed, d.firstErr)
			}
			results[m.name] = append(results[m.name], d)
			rates[m.name] = d.rate()
			line += fmt.Sprintf("  %s %6.0f", m.name, d.rate())
		}
		ratios = append(ratios, rates["Stream"]/rates["HTTP"])
		asyncRatios = append(asyncRatios, rates["Stream"]/rates["HTTP-async"])
		fmt.Println(line, " msg/s")
	}
	if hook.wrong.Load() > 0 {
		return fmt.Errorf("the sessionWebhook got %d posts that answer no message sent", hook.wrong.Load())
	}
	fmt.Println()
	fmt.Println("| way | messages/s (median of rounds) | latency p50 | latency p99 | Caddy CPU-ms per message | harness CPU-ms per message |")
	fmt.Println("|---|---|---|---|---|---|")
	lat := map[string][2]time.Duration{}
	for _, m := range modes {
		var rates, cpu, harness []float64
		var all []time.Duration
		for _, d := range results[m.name] {
			rates = append(rates, d.rate())
			cpu = append(cpu, 1000*d.caddyCPU/float64(d.ok))
			harness = append(harness, 1000*d.harnessCPU/float64(d.ok))
			all = append(all, d.latencies...)
		}
		slices.Sort(all)
		lat[m.name] = [2]time.Duration{percentile(all, 50), percentile(all, 99)}
		fmt.Printf("| %s | %.0f | %s | %s | %.3f | %.3f |\n", m.name, median(rates), lat[m.name][0], lat[m.name][1], median(cpu), median(harness))
	}
	fmt.Printf("\nStream/HTTP messages per second: %.2f (median of the rounds' ratios; target >= 0.8)\n", median(ratios))
	fmt.Printf("added latency: %s at the median, %s at p99\n",
		lat["Stream"][0]-lat["HTTP"][0], lat["Stream"][1]-lat["HTTP"][1])
	fmt.Printf("Stream/HTTP-async messages per second: %.2f (both answer through the sessionWebhook)\n", median(asyncRatios))
	fmt.Printf("\nload average at the end: %s\n", loadAverage())
	return nil
}

// streamMode is one way of feeding the route: send delivers the message
// with msgId id and returns once its answer was checked.
type streamMode struct {
	name string
	send func(id string) error
}

// drive is what one measured period of one way did.
type drive struct {
	ok, failed int64
	firstErr   error
	elapsed    time.Duration
	latencies  []time.Duration
	caddyCPU   float64 // seconds of Caddy's CPU time in the measured period
	harnessCPU float64 // and of the harness's (the load, the fake Stream server and sessionWebhook)
}

func (d drive) rate() float64 { return float64(d.ok) / d.elapsed.Seconds() }

// drivePeriod keeps conns messages in flight for the warm-up and the
// measured period, and reports the measured one, with Caddy's CPU time
// (p's) in it; with profiling, it saves a CPU profile of that period under
// that name.
func drivePeriod(env environment, p *caddyProc, profiling string, send func(id string) error) (drive, error) {
	var measuring, stopping atomic.Bool
	var mu sync.Mutex
	var d drive
	var wg sync.WaitGroup
	for range env.o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for !stopping.Load() && env.ctx.Err() == nil {
				id := fmt.Sprintf("msgBench%s%012d", runID, sent.Add(1))
				start := time.Now()
				err := send(id)
				took := time.Since(start)
				if !measuring.Load() || stopping.Load() {
					continue
				}
				mu.Lock()
				if err != nil {
					d.failed++
					if d.firstErr == nil {
						d.firstErr = err
					}
				} else {
					d.ok++
				}
				mu.Unlock()
				if err == nil {
					mine = append(mine, took)
				}
			}
			mu.Lock()
			d.latencies = append(d.latencies, mine...)
			mu.Unlock()
		}()
	}
	sleep(env.ctx, env.o.warmup)
	waitProfile := func() error { return nil }
	if profiling != "" {
		waitProfile = profile(p, "cpu", env.o.duration, env.o.profile, profiling)
	}
	cpuBefore, cpuErr := cpuSeconds(p.Pid())
	harnessBefore, harnessErr := cpuSeconds(os.Getpid())
	measuring.Store(true)
	start := time.Now()
	sleep(env.ctx, env.o.duration)
	stopping.Store(true)
	d.elapsed = time.Since(start)
	cpuAfter, err := cpuSeconds(p.Pid())
	harnessAfter, harnessErr2 := cpuSeconds(os.Getpid())
	wg.Wait()
	d.caddyCPU, d.harnessCPU = cpuAfter-cpuBefore, harnessAfter-harnessBefore
	return d, errors.Join(cpuErr, harnessErr, err, harnessErr2, waitProfile())
}

// message is the harness's group text message with msgId id, answered
// (in Stream mode) to the hook.
func message(id string, hook *answerHook) []byte {
	return dingtalktest.Callback{Text: "hello robot", Group: true, MsgID: id,
		SessionWebhook: "http://" + hook.addr + dingtalktest.WebhookPath + "?session=s"}.Body()
}

// sendHTTP posts the message signed to the route and checks its answer.
func sendHTTP(client *http.Client, addr, id string, hook *answerHook) error {
	status, body, err := postSigned(client, "http://"+addr+"/robot", message(id, hook))
	if err == nil && (status != http.StatusOK || answerOf(body) != id) {
		err = fmt.Errorf("HTTP %d %s for %s", status, body, id)
	}
	return err
}

// postSigned posts body signed to url and reads the answer.
func postSigned(client *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := dingtalktest.NewRequest(url, secret, body, time.Now())
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// sendStream pushes the message to the gateway's socket and waits for its
// answer at the hook.
func sendStream(ctx context.Context, fake *dingtalktest.StreamServer, id string, hook *answerHook) error {
	answered := hook.expect(id)
	if _, err := fake.SendRobotMessage(ctx, message(id, hook)); err != nil {
		hook.forget(id)
		return err
	}
	return waitAnswer(answered, hook, id)
}

// sendHTTPAsync posts the message signed to the async route, checks its
// empty answer, and waits for the answer at the hook.
func sendHTTPAsync(client *http.Client, addr, id string, hook *answerHook) error {
	answered := hook.expect(id)
	status, body, err := postSigned(client, "http://"+addr+"/robot-async", message(id, hook))
	if err == nil && (status != http.StatusOK || string(bytes.TrimSpace(body)) != emptyReply) {
		err = fmt.Errorf("HTTP %d %s for %s", status, body, id)
	}
	if err != nil {
		hook.forget(id)
		return err
	}
	return waitAnswer(answered, hook, id)
}

// waitAnswer waits for the answer to id at the hook.
func waitAnswer(answered <-chan struct{}, hook *answerHook, id string) error {
	select {
	case <-answered:
		return nil
	case <-time.After(streamAnswerWait):
		hook.forget(id)
		return fmt.Errorf("no answer to %s within %s", id, streamAnswerWait)
	}
}

// answerOf returns the msgId a reply "pong <msgId>" answers, "" for
// anything else.
func answerOf(body []byte) string {
	var m struct {
		MsgType string `json:"msgtype"`
		Text    struct {
			Content string `json:"content"`
		} `json:"text"`
	}
	if json.Unmarshal(body, &m) != nil || m.MsgType != "text" {
		return ""
	}
	id, ok := bytes.CutPrefix([]byte(m.Text.Content), []byte("pong "))
	if !ok {
		return ""
	}
	return string(id)
}

// answerHook is a fake sessionWebhook that checks each post answers a
// message the harness is waiting for, and tells the waiter.
type answerHook struct {
	addr    string
	srv     *http.Server
	mu      sync.Mutex
	pending map[string]chan struct{}
	wrong   atomic.Int64
}

func startAnswerHook() (*answerHook, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &answerHook{addr: ln.Addr().String(), pending: map[string]chan struct{}{}}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve)}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *answerHook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := answerOf(body)
	h.mu.Lock()
	ch, ok := h.pending[id]
	delete(h.pending, id)
	h.mu.Unlock()
	if ok {
		close(ch)
	} else {
		h.wrong.Add(1)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = io.WriteString(w, webhookAnswer)
}

func (h *answerHook) expect(id string) <-chan struct{} {
	ch := make(chan struct{})
	h.mu.Lock()
	h.pending[id] = ch
	h.mu.Unlock()
	return ch
}

func (h *answerHook) forget(id string) {
	h.mu.Lock()
	delete(h.pending, id)
	h.mu.Unlock()
}

func (h *answerHook) close() { _ = h.srv.Close() }
