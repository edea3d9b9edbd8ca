package caddymodule

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

// streamLinks holds one link per robot connection, shared by every config
// of this process that has the robot with the same credentials and topics:
// a reload keeps the connection, and the last config to let go closes it.
var streamLinks = caddy.NewUsagePool()

// streamUserAgent is sent when a connection is opened.
const streamUserAgent = "caddy-dingtalk"

// streamShutdownGrace is how long deliveries under way may still run when
// Caddy exits.
const streamShutdownGrace = 10 * time.Second

// streamLink is one robot's connection, kept up from the first config that
// uses it until the last one is cleaned up. Frames go to the route of the
// newest config that started.
type streamLink struct {
	client *stream.Client
	route  atomic.Pointer[streamRoute]
	token  Token // this process's name for the single connection's lease

	start  sync.Once
	ctx    context.Context // ends the connection
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection is down for good

	// Deliveries run in the background under deliverCtx, which ends only
	// when they outlast the shutdown grace at Caddy's exit.
	deliveries    sync.WaitGroup
	workers       *workers
	deliverCtx    context.Context
	deliverCancel context.CancelFunc

	wasConnected bool // on the client's goroutine: a later connection is a reconnect
}

func newStreamLink(apiBase string, r *streamRoute) *streamLink {
	l := &streamLink{token: newClaimToken(), done: make(chan struct{}), workers: newWorkers()}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.deliverCtx, l.deliverCancel = context.WithCancel(context.Background())
	l.client = &stream.Client{
		APIBase:       apiBase,
		ClientID:      r.clientID,
		ClientSecret:  r.secret,
		Subscriptions: r.subscriptions(),
		UserAgent:     streamUserAgent,
		Handler:       l.handle,
		OnState:       l.state,
	}
	l.route.Store(r)
	return l
}

// use sends the link's frames to r from now on, and starts the connection
// the first time.
func (l *streamLink) use(r *streamRoute) {
	l.route.Store(r)
	l.start.Do(func() { go l.run() })
}

// run keeps the connection up until Destruct.
func (l *streamLink) run() {
	defer close(l.done)
	if l.route.Load().single {
		l.runLeased()
		return
	}
	_ = l.client.Run(l.ctx)
}

// Destruct closes the connection (normally: DingTalk sees the socket
// close) once no config uses it. Deliveries under way finish on their own,
// except at Caddy's exit, where they get a bounded grace.
func (l *streamLink) Destruct() error {
	l.cancel()
	l.start.Do(func() { close(l.done) }) // never started
	<-l.done
	l.workers.close()
	if !caddy.Exiting() {
		return nil
	}
	finished := make(chan struct{})
	go func() { l.deliveries.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(streamShutdownGrace):
		l.route.Load().logger.Warn("dingtalk stream deliveries still running at shutdown; ending them")
		l.deliverCancel()
		<-finished
	}
	return nil
}

// handle routes a frame to the current config's route.
func (l *streamLink) handle(ctx context.Context, f *stream.Frame) stream.Ack {
	r := l.route.Load()
	switch {
	case f.Type == stream.TypeCallback && f.Topic() == stream.TopicRobot && r.deliverTo != "":
		l.deliveries.Add(1)
		l.workers.run(func() {
			defer l.deliveries.Done()
			r.deliverMessage(l.deliverCtx, f)
		})
		return stream.CallbackAck(f.MessageID(), nil)
	case f.Type == stream.TypeCallback && f.Topic() == stream.TopicCard && r.cardsTo != "":
		return r.answerCard(ctx, f)
	case f.Type == stream.TypeEvent && r.eventsTo != "":
		return r.answerEvent(ctx, f)
	}
	r.metrics.frame(topicOther, frameUnrouted)
	r.logger.Warn("dingtalk stream frame with no destination; acked 404",
		zap.String("type", f.Type), zap.String("topic", f.Topic()), zap.String("message_id", f.MessageID()))
	return stream.NewAck(f.MessageID(), stream.CodeNotFound, "")
}

// state logs and counts each change of the connection's state.
func (l *streamLink) state(s stream.State) {
	r := l.route.Load()
	r.metrics.connected(s.Connected)
	if s.Connected {
		if l.wasConnected {
			r.metrics.reconnect()
		}
		l.wasConnected = true
		r.logger.Info("dingtalk stream connected", zap.String("endpoint", s.Host))
		return
	}
	if l.ctx.Err() != nil {
		r.logger.Info("dingtalk stream closed")
		return
	}
	fields := []zap.Field{zap.Int("failures", s.Failures), zap.Duration("retry_in", s.Retry)}
	if s.Err == nil {
		r.logger.Info("dingtalk stream disconnected on DingTalk's request; reconnecting", fields...)
		return
	}
	r.logger.Warn("dingtalk stream disconnected", append(fields, zap.Error(s.Err))...)
}
