package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

// How Stream frames are delivered.
const (
	// streamDeliverTimeout bounds one POST of a robot message, the route's
	// answer included: as long as the async relay gives a route.
	streamDeliverTimeout = defaultAsyncTimeout
	// streamDeliverRetries is how many more times a message is POSTed after
	// a network error or a 5xx answer.
	streamDeliverRetries = 3
	// streamCallbackTimeout bounds a card's or an event's POST: DingTalk
	// waits for their ack.
	streamCallbackTimeout = 10 * time.Second
)

// streamRetryBackoff paces the retries of a message's delivery.
var streamRetryBackoff = stream.Backoff{Base: 500 * time.Millisecond, Max: 5 * time.Second}

// streamHTTP makes every request of the Stream bridge. It never follows
// redirects: the answer of deliver_to is the robot's answer.
var streamHTTP = &http.Client{
	Transport:     webhookTransportForStream(),
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// webhookTransportForStream keeps as many idle connections to the route as
// the relay keeps to DingTalk: deliveries run side by side.
func webhookTransportForStream() http.RoundTripper {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = defaultAsyncWorkers
	return t
}

// streamRoute is what one config does with one robot's frames.
type streamRoute struct {
	name, clientID, secret       string
	deliverTo, cardsTo, eventsTo string
	local                        map[string]*localServer // the targets that are servers of this Caddy
	webhook                      *dingtalk.WebhookClient
	store                        Store
	claims                       claims // of delivered messages' ids
	single                       bool
	lease                        time.Duration
	logger                       *zap.Logger
	metrics                      *robotStreamMetrics
	link                         *streamLink
}

// subscriptions are the topics the robot's connection receives: those it
// has somewhere to deliver to.
func (r *streamRoute) subscriptions() []stream.Subscription {
	var subs []stream.Subscription
	if r.deliverTo != "" {
		subs = append(subs, stream.Subscription{Type: stream.TypeCallback, Topic: stream.TopicRobot})
	}
	if r.cardsTo != "" {
		subs = append(subs, stream.Subscription{Type: stream.TypeCallback, Topic: stream.TopicCard})
	}
	if r.eventsTo != "" {
		subs = append(subs, stream.Subscription{Type: stream.TypeEvent, Topic: stream.TopicAllEvents})
	}
	return subs
}

// streamAnswer is what a POST got back.
type streamAnswer struct {
	status    int
	header    http.Header
	body      []byte
	overflow  bool
	inProcess bool // served by a server of this Caddy without a connection
}

// post sends body to target as DingTalk's HTTP mode would: signed with a
// fresh timestamp and the robot's secret, with header added; in-process
// when target is a server of this Caddy (see stream_local.go), over HTTP
// otherwise.
func (r *streamRoute) post(ctx context.Context, target string, body []byte, header http.Header) (*streamAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", streamUserAgent)
	req.Header.Set(dingtalk.HeaderTimestamp, ts)
	req.Header.Set(dingtalk.HeaderSign, dingtalk.Sign(r.secret, ts))
	if ls := r.local[target]; ls != nil {
		if answer, served, err := ls.serve(req); served || err != nil {
			return answer, err
		}
	}
	resp, err := streamHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxReplySize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	overflow := len(answer) > maxReplySize
	return &streamAnswer{status: resp.StatusCode, header: resp.Header, body: answer[:min(len(answer), maxReplySize)], overflow: overflow}, nil
}

// deliverMessage posts a robot message to deliver_to, once per msgId, and
// its answer to the message's sessionWebhook. The msgId alone is claimed: a
// repeated frame carries the same message, and a message without a msgId
// is not delivered.
func (r *streamRoute) deliverMessage(ctx context.Context, f *stream.Frame) {
	start := time.Now()
	body := []byte(f.Data)
	// Lazy: most messages log nothing at the default level.
	logger := r.logger.WithLazy(zap.String("message_id", f.MessageID()))
	msg, err := dingtalk.ParseMessage(body)
	if err != nil {
		r.metrics.frame(topicMessage, frameInvalid)
		logger.Warn("dingtalk stream frame is not a robot message; dropped", zap.Error(err))
		return
	}
	logger = logger.WithLazy(zap.String("msg_id", msg.MsgID))
	var held claim
	ok, err := r.claims.claimKey(ctx, "stream/"+r.clientID+"/msg/"+msg.MsgID, msg.MsgID, start, &held)
	switch {
	case err != nil:
		logger.Warn("dingtalk stream store unavailable; message delivered without de-duplication", zap.Error(err))
		r.deliver(ctx, msg, body, start, logger)
	case !ok:
		r.metrics.frame(topicMessage, frameDuplicate)
		logger.Info("dingtalk stream duplicate message; not delivered again")
	default:
		_ = held.serveHeld(func() (bool, error) { return r.deliver(ctx, msg, body, start, logger), nil })
	}
}

// deliver posts msg (body) to deliver_to and the answer to its
// sessionWebhook, and reports whether the message may have been answered.
func (r *streamRoute) deliver(ctx context.Context, msg *dingtalk.Message, body []byte, start time.Time, logger *zap.Logger) (answered bool) {
	answer, err := r.postMessage(ctx, body)
	var reply []byte
	if err == nil {
		reply, err = replyFromAnswer(answer.status, answer.header, answer.body, answer.overflow)
	}
	r.metrics.delivered(topicMessage, time.Since(start))
	if err != nil {
		r.metrics.frame(topicMessage, frameFailed)
		logger.Error("dingtalk stream message not delivered", zap.String("deliver_to", r.deliverTo), zap.Error(err))
		return false
	}
	posted := "none"
	answered = true
	if reply != nil {
		posted, answered = r.postReply(ctx, msg, reply, logger)
	}
	r.metrics.frame(topicMessage, frameDelivered)
	logger.Info("dingtalk stream message delivered", zap.Int("status", answer.status),
		zap.Bool("in_process", answer.inProcess),
		zap.String("webhook_result", posted), zap.Duration("duration", time.Since(start)))
	return answered
}

// postMessage POSTs a message to deliver_to, again after a network error
// or a 5xx answer, a few times with back-off.
func (r *streamRoute) postMessage(ctx context.Context, body []byte) (*streamAnswer, error) {
	for attempt := 1; ; attempt++ {
		postCtx, cancel := context.WithTimeout(ctx, streamDeliverTimeout)
		answer, err := r.post(postCtx, r.deliverTo, body, nil)
		cancel()
		if err == nil && answer.status < http.StatusInternalServerError {
			return answer, nil
		}
		if err == nil {
			err = fmt.Errorf("deliver_to answered HTTP %d", answer.status)
		}
		if attempt > streamDeliverRetries {
			return nil, fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		if !sleepOrDone(ctx, streamRetryBackoff.Delay(attempt)) {
			return nil, fmt.Errorf("%w; stopped retrying: %w", err, ctx.Err())
		}
	}
}

// postReply posts the route's answer to the message's sessionWebhook, with
// the relay's client and URL policy, and reports the result and whether
// the message may have been shown.
func (r *streamRoute) postReply(ctx context.Context, msg *dingtalk.Message, reply []byte, logger *zap.Logger) (string, bool) {
	start := time.Now()
	result, err := r.webhook.Post(ctx, msg, reply)
	posted := postResult(err)
	metrics.webhookPost(r.name, posted, result.Attempts, time.Since(start))
	if err != nil {
		logger.Warn("dingtalk sessionWebhook post failed",
			zap.String("webhook", dingtalk.RedactWebhook(msg.SessionWebhook)),
			zap.String("result", posted), zap.Int("attempts", result.Attempts), zap.Error(err))
		return posted, result.MaybeDelivered
	}
	return posted, true
}

// frameHeaders tell a card or event backend what the frame was.
func frameHeaders(f *stream.Frame) http.Header {
	h := http.Header{}
	for header, name := range map[string]string{
		"X-Dingtalk-Topic":           stream.HeaderTopic,
		"X-Dingtalk-Message-Id":      stream.HeaderMessageID,
		"X-Dingtalk-Event-Type":      stream.HeaderEventType,
		"X-Dingtalk-Event-Id":        stream.HeaderEventID,
		"X-Dingtalk-Event-Corp-Id":   stream.HeaderEventCorpID,
		"X-Dingtalk-Event-Born-Time": stream.HeaderEventBornTime,
	} {
		if v := f.Headers[name]; v != "" {
			h.Set(header, v)
		}
	}
	return h
}

// postCallback posts a card callback or an event to target (the
// destination named name), for DingTalk's ack: within
// streamCallbackTimeout, and failing unless the answer is a whole 2xx.
func (r *streamRoute) postCallback(ctx context.Context, f *stream.Frame, topic, name, target string) (*streamAnswer, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, streamCallbackTimeout)
	defer cancel()
	answer, err := r.post(ctx, target, []byte(f.Data), frameHeaders(f))
	r.metrics.delivered(topic, time.Since(start))
	if err == nil && (answer.status < 200 || answer.status > 299 || answer.overflow) {
		err = fmt.Errorf("%s answered HTTP %d", name, answer.status)
	}
	return answer, err
}

// answerCard posts a card callback to cards_to and acks with its JSON answer.
func (r *streamRoute) answerCard(ctx context.Context, f *stream.Frame) stream.Ack {
	answer, err := r.postCallback(ctx, f, topicCard, "cards_to", r.cardsTo)
	var ack stream.Ack
	if err == nil {
		ack = stream.CallbackAck(f.MessageID(), bytes.TrimSpace(answer.body))
		if ack.Code != stream.CodeOK {
			err = errors.New("cards_to answered a body that is not JSON")
		}
	}
	if err != nil {
		r.metrics.frame(topicCard, frameFailed)
		r.logger.Warn("dingtalk stream card callback failed", zap.String("message_id", f.MessageID()), zap.Error(err))
		return stream.NewAck(f.MessageID(), stream.CodeError, "")
	}
	r.metrics.frame(topicCard, frameDelivered)
	return ack
}

// answerEvent posts an event to events_to and acks SUCCESS on a 2xx
// answer, LATER otherwise.
func (r *streamRoute) answerEvent(ctx context.Context, f *stream.Frame) stream.Ack {
	if _, err := r.postCallback(ctx, f, topicEvent, "events_to", r.eventsTo); err != nil {
		r.metrics.frame(topicEvent, frameLater)
		r.logger.Warn("dingtalk stream event not taken; DingTalk delivers it again later",
			zap.String("event_type", f.Headers[stream.HeaderEventType]), zap.String("event_id", f.Headers[stream.HeaderEventID]), zap.Error(err))
		return stream.EventAck(f.MessageID(), stream.EventLater)
	}
	r.metrics.frame(topicEvent, frameDelivered)
	return stream.EventAck(f.MessageID(), stream.EventSuccess)
}
