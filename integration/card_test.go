package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// cardSetup is a gateway whose async relay shows streamed answers as AI
// cards on a fake OpenAPI, with a fake webhook for plain replies.
type cardSetup struct {
	*gateway
	webhook *dingtalktest.Recorder
	api     *dingtalktest.OpenAPI
}

// startCardSetup starts the fakes and a gateway in front of backend; card
// is the card block's content, async more lines of the async block.
func startCardSetup(t *testing.T, backend http.HandlerFunc, card, async string) *cardSetup {
	t.Helper()
	upstream := dingtalktest.NewRecorder()
	upstream.Handler = backend
	t.Cleanup(upstream.Close)
	webhook := dingtalktest.NewWebhook()
	t.Cleanup(webhook.Close)
	api := newFakeOpenAPI(t)
	g := startGateway(t, site{FilterSign: true, Body: fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	route /robot {
		dingtalk {
			bot card-bot %q {
				app_key %s
			}
			api_base %s
			async {
				webhook_hosts %s
				webhook_retries 0
				%s
				card {
					%s
				}
			}
		}
		reverse_proxy %s
	}`, apiSecret, apiAppKey, api.URL, hostPort(webhook.URL), async, card, hostPort(upstream.URL))})
	return &cardSetup{gateway: g, webhook: webhook, api: api}
}

func (s *cardSetup) ask(t *testing.T, text string, group bool) {
	t.Helper()
	body := dingtalktest.Callback{Text: text, Group: group, SessionWebhook: s.webhook.SessionURL()}.Body()
	mustEmptyAck(t, s.post("/robot", apiSecret, body))
}

// streamWords answers with the words of answer, flushed one by one, in the
// form the callback's text names.
func streamWords(answer string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, _ := dingtalk.ParseMessage(readBody(r))
		form := m.TrimmedText()
		switch form {
		case "openai", "plain":
			w.Header().Set("Content-Type", "text/event-stream")
		case "markdown":
			w.Header().Set("Content-Type", "text/markdown")
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		for _, word := range strings.SplitAfter(answer, " ") {
			switch form {
			case "openai":
				chunk, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{"content": word}}}})
				fmt.Fprintf(w, "data: %s\n\n", chunk)
			case "plain":
				fmt.Fprintf(w, "data: %s\n\n", word)
			default:
				fmt.Fprint(w, word)
			}
			w.(http.Flusher).Flush()
		}
		if form == "openai" {
			fmt.Fprint(w, "data: [DONE]\n\n")
		}
	}
}

// finishedCards waits until n cards are finished or failed and returns them.
func (s *cardSetup) endedCards(t *testing.T, n int) []dingtalktest.Card {
	t.Helper()
	waitFor(t, fmt.Sprint(n, " ended cards"), func() bool {
		ended := 0
		for _, c := range s.api.Cards() {
			if c.State() == "3" || c.State() == "5" {
				ended++
			}
		}
		return ended >= n
	})
	return s.api.Cards()
}

// checkCard checks that card shows want, finished, after updates with unique
// guids, exactly one finalize, the last, never closer than interval.
func checkCard(t *testing.T, card dingtalktest.Card, want string, interval time.Duration) {
	t.Helper()
	if card.Content() != want || card.Params["msgContent"] != want || card.State() != "3" {
		t.Errorf("card shows %q (msgContent %q), state %s; want %q, finished", card.Content(), card.Params["msgContent"], card.State(), want)
	}
	guids := map[string]bool{}
	for i, u := range card.Updates {
		if guids[u.GUID] || u.Error || u.Finalize != (i == len(card.Updates)-1) {
			t.Errorf("update %d/%d: guid seen %v, error %v, finalize %v", i+1, len(card.Updates), guids[u.GUID], u.Error, u.Finalize)
		}
		guids[u.GUID] = true
		// Sent at least interval apart; arrivals may be closer by the
		// loopback's jitter.
		if i > 0 && u.At.Sub(card.Updates[i-1].At) < interval-5*time.Millisecond {
			t.Errorf("updates %d and %d arrived %v apart, under the interval %v", i, i+1, u.At.Sub(card.Updates[i-1].At), interval)
		}
	}
}

func TestStreamedAnswersFillACard(t *testing.T) {
	const answer = "Streams of words arrive one by one, 一个字一个字, until the answer is whole."
	s := startCardSetup(t, streamWords(answer), "interval 40ms", "")
	forms := []string{"openai", "plain", "chunked", "markdown"}
	for i, form := range forms {
		s.ask(t, form, i%2 == 0)
		cards := s.endedCards(t, i+1)
		if len(cards) != i+1 {
			t.Fatalf("%s: %d cards in all, want %d", form, len(cards), i+1)
		}
		card := cards[i]
		checkCard(t, card, answer, 40*time.Millisecond)
		wantSpace := "dtv1.card//IM_ROBOT.user123"
		if i%2 == 0 {
			wantSpace = "dtv1.card//IM_GROUP.cidGroup123=="
		}
		if card.OpenSpaceID != wantSpace || card.TemplateID != "382e4302-551d-4880-bf29-a30acfab2e71.schema" {
			t.Errorf("%s: card in %q with template %q", form, card.OpenSpaceID, card.TemplateID)
		}
	}
	if n := s.webhook.Count(); n != 0 {
		t.Errorf("the webhook got %d posts; streamed answers go to cards only", n)
	}
	waitFor(t, "the jobs to finish", func() bool { return strings.Count(s.logs(), `"outcome":"succeeded"`) == len(forms) })
	m, _ := scrape(t, s.URL+"/metrics")
	if got := m[`caddy_dingtalk_cards_created_total{bot="card-bot"}`]; got != float64(len(forms)) {
		t.Errorf("cards_created_total = %v, want %d", got, len(forms))
	}
	if m[`caddy_dingtalk_card_updates_total{bot="card-bot",result="sent"}`] < float64(len(forms)) ||
		m[`caddy_dingtalk_card_first_update_seconds_count{bot="card-bot"}`] != float64(len(forms)) {
		t.Errorf("card metrics: %v", m)
	}
}

func TestANonStreamedAnswerIsPostedAsBeforeUnlessAlways(t *testing.T) {
	for _, always := range []bool{false, true} {
		card := ""
		if always {
			card = "always"
		}
		s := startCardSetup(t, plainText("a plain answer"), card, "")
		s.ask(t, "hello", true)
		if always {
			checkCard(t, s.endedCards(t, 1)[0], "a plain answer", 0)
			continue
		}
		waitFor(t, "the reply", func() bool { return s.webhook.Count() == 1 })
		if n := len(s.api.Cards()); n != 0 {
			t.Errorf("a non-streamed answer made %d cards", n)
		}
	}
}

func TestABrokenStreamFailsTheCardVisibly(t *testing.T) {
	backend := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"half an \"}}]}\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // the backend dies mid-stream
		}
	}
	s := startCardSetup(t, backend, "interval 20ms", `fallback_text "The bot failed, sorry."`)
	s.ask(t, "question", true)
	card := s.endedCards(t, 1)[0]
	last := card.Updates[len(card.Updates)-1]
	if card.State() != "5" || !last.Error || !last.Finalize || last.Content != "half an \n\nThe bot failed, sorry." {
		t.Errorf("card state %s, last update %+v; want failed, with the fallback text", card.State(), last)
	}
	waitFor(t, "the job to finish", func() bool { return strings.Contains(s.logs(), `"outcome":"failed"`) })
	if n := s.webhook.Count(); n != 0 {
		t.Errorf("%d webhook posts; the card shows the failure", n)
	}
}

func TestARefusedCardBecomesOneMarkdownMessage(t *testing.T) {
	const answer = "# Title\n\nThe whole answer, in one message."
	s := startCardSetup(t, streamWords(answer), "", "")
	s.api.Fail(dingtalktest.OpenAPICardCreatePath, dingtalktest.FailNoPermission, 2)
	for range 2 {
		s.ask(t, "openai", true)
	}
	waitFor(t, "two messages", func() bool { return s.webhook.Count() == 2 })
	for _, r := range s.webhook.Requests() {
		var m dingtalk.OutgoingMessage
		if err := json.Unmarshal(r.Body, &m); err != nil || m.Markdown == nil || m.Markdown.Text != answer || m.Markdown.Title != "Title" {
			t.Errorf("webhook got %s, want the whole answer as markdown", r.Body)
		}
	}
	waitFor(t, "the jobs to finish", func() bool { return strings.Count(s.logs(), `"outcome":"succeeded"`) == 2 })
	if n := strings.Count(s.logs(), "dingtalk card could not be made"); n != 1 {
		t.Errorf("the refusal was logged %d times at WARN, want once per robot", n)
	}
	if n := len(s.api.Calls(dingtalktest.OpenAPICardStreamingPath)); n != 0 {
		t.Errorf("%d updates of refused cards", n)
	}
}

func TestContentOverMaxCharsContinuesInNewCards(t *testing.T) {
	var answer strings.Builder
	for i := range 12 {
		fmt.Fprintf(&answer, "line %02d of a long streamed answer. ", i) // 35 bytes
	}
	s := startCardSetup(t, streamWords(answer.String()), "interval 10ms\nmax_chars 100", "")
	s.ask(t, "chunked", true)
	waitFor(t, "the job to finish", func() bool { return strings.Contains(s.logs(), "dingtalk async job finished") })
	var shown strings.Builder
	for _, c := range s.api.Cards() {
		checkCard(t, c, c.Content(), 10*time.Millisecond)
		if len(c.Content()) > 100 {
			t.Errorf("a card holds %d bytes", len(c.Content()))
		}
		shown.WriteString(c.Content())
	}
	if shown.String() != answer.String() || len(s.api.Cards()) < 5 {
		t.Errorf("%d cards show %q, want %q", len(s.api.Cards()), shown.String(), answer.String())
	}
}

func TestQPSLimitSlowsTheCardDownAndItStillFinishes(t *testing.T) {
	answer := strings.Repeat("word ", 12)
	var api *dingtalktest.OpenAPI
	// A word after each call that reaches DingTalk: the card is always
	// behind, and meets the limit.
	backend := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, word := range strings.SplitAfter(answer, " ") {
			fmt.Fprintf(w, "data: %s\n\n", word)
			w.(http.Flusher).Flush()
			select {
			case <-api.Notify():
			case <-time.After(5 * time.Second):
			}
		}
	}
	s := startCardSetup(t, backend, "interval 5ms", "")
	api = s.api
	s.api.LimitCardRate(2)
	s.ask(t, "plain", true)
	checkCard(t, s.endedCards(t, 1)[0], answer, 0)
	m, _ := scrape(t, s.URL+"/metrics")
	if m[`caddy_dingtalk_card_updates_total{bot="card-bot",result="slowed"}`] == 0 {
		t.Error("no update was slowed down by the 403s")
	}
	if n := s.api.MaxPerSecond(dingtalktest.OpenAPICardStreamingPath); n == 0 {
		t.Error("no streaming call")
	}
}

func TestATenMegabyteStreamIsNotBuffered(t *testing.T) {
	var written atomic.Int64
	ended := make(chan struct{})
	backend := func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		w.Header().Set("Content-Type", "text/plain")
		chunk := []byte(strings.Repeat("0123456789abcdef", 2048)) // 32 KB
		for written.Load() < 10<<20 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}
	s := startCardSetup(t, backend, "interval 10ms", "timeout 2s")
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() { // samples the heap while the stream runs
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	s.ask(t, "big", true)
	<-ended
	close(stop)
	waitFor(t, "the job to finish", func() bool { return strings.Contains(s.logs(), "dingtalk async job finished") })
	card := s.api.Cards()
	if n := written.Load(); n >= 10<<20 {
		t.Errorf("the backend wrote all %d bytes: nothing held it back", n)
	}
	if grew := int64(peak.Load()) - int64(before.HeapInuse); grew > 32<<20 {
		t.Errorf("the heap grew by %d MB while streaming", grew>>20)
	}
	if last := card[len(card)-1]; last.State() != "5" {
		t.Errorf("the card that timed out is in state %s, want failed", last.State())
	}
}

func TestTwoGatewaysOnOneRedisShareTheCardBudget(t *testing.T) {
	srv := redistest.Start(t)
	const answer = "shared budget, one word at a time"
	backend := dingtalktest.NewRecorder()
	t.Cleanup(backend.Close)
	backend.Handler = streamWords(answer)
	webhook := dingtalktest.NewWebhook()
	t.Cleanup(webhook.Close)
	api := newFakeOpenAPI(t)
	const rate = 10
	one, second := startTwoGatewaysOnRedis(t, srv.Addr, api, webhook, backend, rate, "card {\n\t\t\t\t\tinterval 10ms\n\t\t\t\t}")
	const callbacks = 6
	for i := range callbacks {
		url := one.URL
		if i%2 == 1 {
			url = second
		}
		body := dingtalktest.Callback{Text: "openai", Group: true, SessionWebhook: webhook.SessionURL()}.Body()
		req, err := dingtalktest.NewRequest(url+"/robot", apiSecret, body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mustEmptyAck(t, one.do(req))
	}
	s := &cardSetup{gateway: one, webhook: webhook, api: api}
	for _, c := range s.endedCards(t, callbacks) {
		checkCard(t, c, answer, 10*time.Millisecond)
	}
	if n := api.MaxPerSecond(""); n > rate {
		t.Errorf("DingTalk saw %d calls in one second from the two gateways, over their shared api_rate of %d", n, rate)
	}
}

func TestOverflowMessagesPostsTheRestAsMarkdown(t *testing.T) {
	var answer strings.Builder
	for i := range 8 {
		fmt.Fprintf(&answer, "line %02d of a long streamed answer. ", i) // 35 bytes
	}
	s := startCardSetup(t, streamWords(answer.String()), "interval 10ms\nmax_chars 100\noverflow messages", "")
	s.ask(t, "chunked", true)
	waitFor(t, "the rest as a message", func() bool { return s.webhook.Count() == 1 })
	cards := s.api.Cards()
	if len(cards) != 1 {
		t.Fatalf("%d cards, want 1", len(cards))
	}
	checkCard(t, cards[0], cards[0].Content(), 10*time.Millisecond)
	var m dingtalk.OutgoingMessage
	if err := json.Unmarshal(s.webhook.Requests()[0].Body, &m); err != nil || m.Markdown == nil {
		t.Fatalf("webhook got %s, want markdown", s.webhook.Requests()[0].Body)
	}
	if got := cards[0].Content() + m.Markdown.Text; got != answer.String() {
		t.Errorf("the card and the message give %q, want %q", got, answer.String())
	}
}
