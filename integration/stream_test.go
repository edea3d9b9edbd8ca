package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

const streamClientID = "dingappkey1"

// streamed is a gateway whose dingtalk_stream app connects one robot to a
// fake Stream server and delivers its messages to the gateway's own
// /robot route.
type streamed struct {
	*gateway
	fake    *dingtalktest.StreamServer
	webhook *dingtalktest.Recorder
	backend *dingtalktest.Recorder // behind /robot, /cards and /events
}

// streamSite is the gateway's Caddyfile: robot options go into the robot
// block, route into the /robot route after the dingtalk handler.
func (s *streamed) site(robot, route string) site {
	return site{FilterSign: true, Global: fmt.Sprintf(`dingtalk_stream {
		api_base %s
		robot support {
			client_id %s
			secret %q
			deliver_to GATEWAY_URL/robot
			webhook_hosts %s
			%s
		}
	}`, s.fake.URL, streamClientID, testSecret, hostPort(s.webhook.URL), robot),
		Body: fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	route /robot {
		dingtalk {
			secret %q
		}
		%s
	}
	reverse_proxy %s`, testSecret, route, hostPort(s.backend.URL))}
}

func startStreamed(t *testing.T, robot, route string) *streamed {
	t.Helper()
	s := &streamed{
		fake:    dingtalktest.NewStreamServer(streamClientID, testSecret),
		webhook: dingtalktest.NewWebhook(),
		backend: dingtalktest.NewRecorder(),
	}
	t.Cleanup(s.fake.Close)
	t.Cleanup(s.webhook.Close)
	t.Cleanup(s.backend.Close)
	s.gateway = startGateway(t, s.site(robot, route))
	return s
}

func streamContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// message is a robot message whose sessionWebhook is the fake webhook.
func (s *streamed) message(text string) []byte {
	return dingtalktest.Callback{Text: text, Group: true, SessionWebhook: s.webhook.SessionURL()}.Body()
}

// push sends body as a robot message and returns the frame's messageId.
func (s *streamed) push(t *testing.T, body []byte) string {
	t.Helper()
	id, err := s.fake.SendRobotMessage(streamContext(t), body)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (s *streamed) ack(t *testing.T, id string) stream.Ack {
	t.Helper()
	ack, err := s.fake.WaitAck(streamContext(t), id)
	if err != nil {
		t.Fatalf("no ack for %s: %v", id, err)
	}
	return ack
}

// posts returns the bodies posted to the fake sessionWebhook.
func (s *streamed) posts() []string {
	var bodies []string
	for _, r := range s.webhook.Requests() {
		bodies = append(bodies, string(r.Body))
	}
	return bodies
}

func TestStreamMessageReachesTheVerifyingRouteAndItsAnswerTheWebhookOnce(t *testing.T) {
	s := startStreamed(t, "", `dingtalk_reply text "echo {http.dingtalk.text}"`)
	first := s.push(t, s.message("one"))
	if ack := s.ack(t, first); ack.Code != 200 || ack.Data != `{"response":null}` || ack.Headers["contentType"] != "application/json" {
		t.Fatalf("ack %+v", ack)
	}
	waitFor(t, "the answer to reach the sessionWebhook", func() bool { return s.webhook.Count() == 1 })
	// A second message is the positive control: once its answer is there,
	// a second post of the first would have been too.
	s.push(t, s.message("two"))
	waitFor(t, "the second answer", func() bool { return s.webhook.Count() == 2 })
	posts := strings.Join(s.posts(), "\n")
	if strings.Count(posts, `echo one`) != 1 || strings.Count(posts, `echo two`) != 1 || !strings.Contains(posts, `"msgtype":"text"`) {
		t.Errorf("posts to the sessionWebhook:\n%s", posts)
	}
	if n := s.backend.Count(); n != 0 {
		t.Errorf("the backend was contacted %d times", n)
	}
	logs := s.logs()
	if !strings.Contains(logs, "dingtalk stream connected") || !strings.Contains(logs, "dingtalk stream message delivered") {
		t.Errorf("logs lack the connection or the delivery:\n%s", logs)
	}
	// deliver_to is this gateway's own route: served in-process.
	if !strings.Contains(logs, `"in_process":true`) || strings.Contains(logs, `"in_process":false`) {
		t.Errorf("the route was not served in-process:\n%s", logs)
	}
	for _, ticket := range s.fake.Tickets() {
		if strings.Contains(logs, ticket) {
			t.Error("a ticket is in the log")
		}
	}
}

func TestStreamDeliveryWithAnotherSecretIsRejectedByTheRoute(t *testing.T) {
	s := &streamed{
		fake:    dingtalktest.NewStreamServer(streamClientID, "another secret"),
		webhook: dingtalktest.NewWebhook(),
		backend: dingtalktest.NewRecorder(),
	}
	defer s.fake.Close()
	defer s.webhook.Close()
	defer s.backend.Close()
	cfg := s.site("", `dingtalk_reply text "echo {http.dingtalk.text}"`)
	cfg.Global = strings.Replace(cfg.Global, fmt.Sprintf("secret %q", testSecret), `secret "another secret"`, 1)
	s.gateway = startGateway(t, cfg)
	s.push(t, s.message("forged?"))
	waitFor(t, "the failed delivery to be logged", func() bool { return strings.Contains(s.logs(), "dingtalk stream message not delivered") })
	if !strings.Contains(s.logs(), "HTTP 401") || s.webhook.Count() != 0 {
		t.Errorf("webhook posts %d; logs:\n%s", s.webhook.Count(), s.logs())
	}
}

func TestStreamAcksAtOnceWhileTheRouteIsBusy(t *testing.T) {
	s := startStreamed(t, "", "")
	release := make(chan struct{})
	s.backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"msgtype":"text","text":{"content":"done thinking"}}`)
	}
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	id := s.push(t, s.message("think hard"))
	waitFor(t, "the backend to get the message", func() bool { return s.backend.Count() == 1 })
	// The backend holds its answer: the ack is there all the same.
	if ack := s.ack(t, id); ack.Code != 200 {
		t.Fatalf("ack %+v", ack)
	}
	if s.webhook.Count() != 0 {
		t.Fatal("something was posted before the backend answered")
	}
	got := s.backend.Requests()[0]
	if got.Header.Get("X-Dingtalk-Bot") != "default" || got.Header.Get("Sign") == "" {
		t.Errorf("the backend got headers %v", got.Header)
	}
	close(release)
	waitFor(t, "the answer", func() bool { return s.webhook.Count() == 1 })
	if posts := s.posts(); posts[0] != `{"msgtype":"text","text":{"content":"done thinking"}}` {
		t.Errorf("posted %s", posts[0])
	}
}

func TestStreamDeliversADuplicateFrameOnce(t *testing.T) {
	s := startStreamed(t, "", "")
	ctx := streamContext(t)
	body := s.message("once")
	frame := stream.Frame{Type: stream.TypeCallback, Headers: map[string]string{stream.HeaderTopic: stream.TopicRobot, stream.HeaderMessageID: "frame-1"}, Data: string(body)}
	for range 2 { // the same frame again, then the same message in another frame
		if _, err := s.fake.Send(ctx, frame); err != nil {
			t.Fatal(err)
		}
	}
	s.push(t, body)
	control := s.push(t, s.message("control"))
	s.ack(t, control)
	// Deliveries run side by side: the first message may reach the
	// backend after the control.
	for _, text := range []string{"once", "control"} {
		waitFor(t, "the message "+text, func() bool {
			for _, r := range s.backend.Requests() {
				if strings.Contains(string(r.Body), text) {
					return true
				}
			}
			return false
		})
	}
	waitFor(t, "the duplicates to be counted", func() bool { return strings.Count(s.logs(), "dingtalk stream duplicate message") == 2 })
	if n := s.backend.Count(); n != 2 {
		t.Errorf("the backend got %d messages, want the first and the control", n)
	}
}

func TestStreamKeepsOneConnectionOverAReloadAndClosesItOnExit(t *testing.T) {
	s := startStreamed(t, "", `dingtalk_reply text "first config"`)
	ctx := streamContext(t)
	if err := s.fake.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.load(s.site("", `dingtalk_reply text "second config"`))
	s.push(t, s.message("after the reload"))
	waitFor(t, "the answer", func() bool { return s.webhook.Count() == 1 })
	if posts := s.posts(); !strings.Contains(posts[0], "second config") {
		t.Errorf("answered by the old config: %s", posts[0])
	}
	if n, c := s.fake.Accepted(), s.fake.Connected(); n != 1 || c != 1 {
		t.Errorf("after a reload: %d sockets connected in all, %d now; want 1 and 1", n, c)
	}

	// The positive control: a reload that changes the topics does open a
	// new connection, and closes the old one.
	s.load(s.site("events_to "+s.backend.URL+"/events", `dingtalk_reply text "third config"`))
	if err := s.fake.Wait(ctx, func() bool { return s.fake.Accepted() == 2 && s.fake.Connected() == 1 }); err != nil {
		t.Fatalf("after a reload with new topics: %d sockets in all, %d now", s.fake.Accepted(), s.fake.Connected())
	}
	opens := s.fake.Opens()
	if subs := opens[len(opens)-1].Subscriptions; len(subs) != 2 || subs[1] != (stream.Subscription{Type: "EVENT", Topic: "*"}) {
		t.Errorf("subscriptions %+v", subs)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.fake.WaitConnected(ctx, 0); err != nil {
		t.Errorf("Caddy stopped, and %d sockets are still connected", s.fake.Connected())
	}
}

func TestStreamCardRoundTripAndEventsSuccessOrLater(t *testing.T) {
	s := startStreamed(t, "", "")
	s.load(s.site(fmt.Sprintf("cards_to %s/cards\n\t\t\tevents_to %s/events", s.backend.URL, s.backend.URL), ""))
	s.backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/cards":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"cardData":{"cardParamMap":{"status":"approved"}}}`)
		case r.Header.Get("X-Dingtalk-Event-Id") == "ev-later":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}
	ctx := streamContext(t)
	card, err := s.fake.SendCard(ctx, []byte(`{"outTrackId":"t1","value":"{\"action\":\"approve\"}"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ack := s.ack(t, card); ack.Code != 200 || ack.Data != `{"response":{"cardData":{"cardParamMap":{"status":"approved"}}}}` {
		t.Errorf("card ack %+v", ack)
	}
	ok, err := s.fake.SendEvent(ctx, "chat_update_title", "ev-ok", []byte(`{"title":"new"}`))
	if err != nil {
		t.Fatal(err)
	}
	later, err := s.fake.SendEvent(ctx, "chat_update_title", "ev-later", []byte(`{"title":"newer"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ack := s.ack(t, ok); ack.Data != `{"status":"SUCCESS"}` {
		t.Errorf("ack of a taken event %+v", ack)
	}
	if ack := s.ack(t, later); ack.Data != `{"status":"LATER"}` {
		t.Errorf("ack of a refused event %+v", ack)
	}
	for _, r := range s.backend.Requests() {
		wantTopic := "chat_update_title"
		if r.Path == "/cards" {
			wantTopic = stream.TopicCard
		}
		if r.Header.Get("X-Dingtalk-Topic") != wantTopic || r.Header.Get("X-Dingtalk-Message-Id") == "" || r.Header.Get("Sign") == "" {
			t.Errorf("%s got headers %v", r.Path, r.Header)
		}
		if r.Path == "/events" && r.Header.Get("X-Dingtalk-Event-Type") != "chat_update_title" {
			t.Errorf("event headers %v", r.Header)
		}
	}
	var seen map[string]any
	if err := json.Unmarshal(s.backend.Requests()[0].Body, &seen); err != nil {
		t.Errorf("the card backend got %s", s.backend.Requests()[0].Body)
	}
}

func TestStreamSendsTheSameSignedRequestInProcessAndOverHTTP(t *testing.T) {
	// deliver_to this gateway's own /robot, whose route passes the message
	// on to the backend: served in-process.
	s := startStreamed(t, "", "")
	bodies := [][]byte{s.message("in-process"), s.message("over HTTP")}
	s.push(t, bodies[0])
	waitFor(t, "the message at the backend through the route", func() bool { return s.backend.Count() == 1 })

	// deliver_to the backend itself: over HTTP.
	cfg := s.site("", "")
	cfg.Global = strings.Replace(cfg.Global, "deliver_to GATEWAY_URL/robot", "deliver_to "+s.backend.URL+"/direct", 1)
	s.load(cfg)
	s.push(t, bodies[1])
	waitFor(t, "the message at the backend directly", func() bool { return s.backend.Count() == 2 })

	for i, r := range s.backend.Requests() {
		body := bodies[i]
		if string(r.Body) != string(body) {
			t.Errorf("request %d: body %s, want the frame's data byte for byte", i, r.Body)
		}
		ts := r.Header.Get("Timestamp")
		if r.Header.Get("Sign") != dingtalk.Sign(testSecret, ts) || r.Header.Get("Content-Type") != "application/json; charset=utf-8" ||
			r.Header.Get("User-Agent") != "caddy-dingtalk" || r.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
			t.Errorf("request %d (%s): headers %v", i, r.Path, r.Header)
		}
	}
	logs := s.logs()
	if strings.Count(logs, `"in_process":true`) != 1 || strings.Count(logs, `"in_process":false`) != 1 {
		t.Errorf("want one delivery in-process and one over HTTP:\n%s", logs)
	}
}

func TestStreamEchoesPingAndReconnectsAfterDisconnectWithANewTicket(t *testing.T) {
	s := startStreamed(t, "", `dingtalk_reply text "echo {http.dingtalk.text}"`)
	ctx := streamContext(t)
	ping, err := s.fake.Ping(ctx, "opaque-42")
	if err != nil {
		t.Fatal(err)
	}
	if ack := s.ack(t, ping); ack.Code != 200 || ack.Data != `{"opaque":"opaque-42"}` {
		t.Errorf("ping ack %+v", ack)
	}
	if err := s.fake.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	first := s.fake.Tickets()
	before, _ := scrape(t, s.URL+"/metrics")

	bye, err := s.fake.Disconnect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ack := s.ack(t, bye); ack.Code != 200 {
		t.Errorf("disconnect ack %+v", ack)
	}
	if err := s.fake.Wait(ctx, func() bool { return s.fake.Accepted() == 2 && s.fake.Connected() == 1 }); err != nil {
		t.Fatalf("after a disconnect: %d sockets in all, %d now; want 2 and 1", s.fake.Accepted(), s.fake.Connected())
	}
	second := s.fake.Tickets()
	if opens := s.fake.Opens(); len(opens) != 2 || opens[1].Ticket != second[0] || first[0] == second[0] {
		t.Errorf("tickets %v then %v, %d opens: want a new open and its new ticket", first, second, len(opens))
	}

	// The next message arrives on the new socket and is answered once; the
	// control message behind it shows a second answer would have been seen.
	s.push(t, s.message("after the disconnect"))
	waitFor(t, "the answer", func() bool { return s.webhook.Count() == 1 })
	s.push(t, s.message("control"))
	waitFor(t, "the control's answer", func() bool { return s.webhook.Count() == 2 })
	if posts := strings.Join(s.posts(), "\n"); strings.Count(posts, "echo after the disconnect") != 1 {
		t.Errorf("posts to the sessionWebhook:\n%s", posts)
	}
	after, _ := scrape(t, s.URL+"/metrics")
	if got := after[`caddy_dingtalk_stream_reconnects_total{robot="support"}`] - before[`caddy_dingtalk_stream_reconnects_total{robot="support"}`]; got != 1 {
		t.Errorf("reconnects went up by %v, want 1", got)
	}
	if !strings.Contains(s.logs(), "dingtalk stream disconnected on DingTalk's request; reconnecting") {
		t.Errorf("the disconnect is not logged:\n%s", s.logs())
	}
}

func TestStreamReloadWaitsForTheDeliveryItServesInProcess(t *testing.T) {
	s := startStreamed(t, "", "")
	release := make(chan struct{})
	s.backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "slow") {
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"msgtype":"text","text":{"content":"answered %d bytes"}}`, len(body))
	}
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	s.push(t, s.message("slow"))
	waitFor(t, "the slow message at the backend", func() bool { return s.backend.Count() == 1 })

	// A reload while the old config's route serves the message in-process:
	// the old config must not be stopped and cleaned up under it.
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		s.load(s.site("", `dingtalk_reply text "second config"`))
	}()
	// The new config started (it answers messages) before the old one
	// stops: send messages until one is answered by it.
	for sent := 1; !strings.Contains(strings.Join(s.posts(), ""), "second config"); sent++ {
		s.push(t, s.message("fast"))
		waitFor(t, "the answer to a fast message", func() bool { return s.webhook.Count() == sent })
	}
	select {
	case <-reloaded:
		t.Fatal("the reload finished while the old config was still serving a message in-process")
	default:
	}
	close(release)
	select {
	case <-reloaded:
	case <-time.After(10 * time.Second):
		t.Fatal("the reload did not finish once the message was answered")
	}
	waitFor(t, "the slow message's answer", func() bool {
		return strings.Contains(strings.Join(s.posts(), ""), fmt.Sprintf("answered %d bytes", len(s.backend.Requests()[0].Body)))
	})
}
