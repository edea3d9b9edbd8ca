package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Defaults of the Client.
const (
	DefaultKeepAlive = time.Minute
	// openTimeout bounds the open request and the WebSocket handshake.
	openTimeout = 10 * time.Second
	// writeTimeout bounds writing one ack; the socket is closed after it.
	writeTimeout = 10 * time.Second
	// maxFrameSize bounds one frame; coder/websocket's default (32 KiB) is
	// below what a long rich-text message can take.
	maxFrameSize = 4 << 20
)

// Handler answers one frame with its ack. Every frame but DingTalk's own
// ping and disconnect is passed to it, each on its own goroutine: a slow
// answer to one frame does not hold the others up, and the ack of a frame
// whose work takes long (a robot message) should be returned at once, with
// the work done in the background. ctx ends when the socket closes.
type Handler func(ctx context.Context, f *Frame) Ack

// State is what the Client reports each time its connection comes up or
// goes down.
type State struct {
	// Connected is true when a socket was just connected.
	Connected bool
	// Host is the host of the endpoint connected to (the ticket is never given).
	Host string
	// Err is why the connection went down or could not be made; nil after a
	// disconnect DingTalk asked for.
	Err error
	// Failures counts the failures in a row, this one included; 0 after a
	// disconnect DingTalk asked for, which is retried at once.
	Failures int
	// Retry is the wait before the next attempt.
	Retry time.Duration
}

// Clock is the time a Client reads and waits on; tests replace it to see
// the back-off without waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx ends, and then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// Client keeps one Stream connection up for one app. Set its fields, then
// call Run; they must not change while it runs.
type Client struct {
	// APIBase is where connections are opened. Default: DefaultAPIBase.
	APIBase string
	// ClientID and ClientSecret are the app's AppKey and AppSecret.
	ClientID     string
	ClientSecret string
	// Subscriptions are the topics the connection receives.
	Subscriptions []Subscription
	// UserAgent is sent with the open request.
	UserAgent string
	// Handler answers frames; nil acks every frame with CodeNotFound.
	Handler Handler
	// OnState, when set, is called on Run's goroutine at each change of
	// the connection's state.
	OnState func(State)
	// Backoff paces reconnections.
	Backoff Backoff
	// KeepAlive is how often a WebSocket ping checks that the socket still
	// carries traffic; a ping unanswered within it closes the socket.
	// Default: DefaultKeepAlive.
	KeepAlive time.Duration
	// HTTPClient opens connections and dials the socket. Default: http.DefaultClient.
	HTTPClient *http.Client
	// Clock defaults to the system's.
	Clock Clock
}

// Run keeps a connection up until ctx ends, then closes the socket with a
// normal closure and returns ctx's error once every Handler call returned.
func (c *Client) Run(ctx context.Context) error {
	failures := 0
	for {
		up, requested, err := c.session(ctx)
		if ctx.Err() != nil {
			c.report(State{Err: ctx.Err()})
			return ctx.Err()
		}
		var wait time.Duration
		if requested {
			failures = 0
		} else {
			if up >= c.Backoff.resetAfter() {
				failures = 0
			}
			failures++
			wait = c.Backoff.Delay(failures)
		}
		c.report(State{Err: err, Failures: failures, Retry: wait})
		if wait > 0 {
			if err := c.clock().Sleep(ctx, wait); err != nil {
				return err
			}
		}
	}
}

// session opens a connection, serves it until it ends, and reports how long
// it was up and whether DingTalk asked for the disconnect.
func (c *Client) session(ctx context.Context) (up time.Duration, requested bool, err error) {
	conn, host, err := c.connect(ctx)
	if err != nil {
		return 0, false, err
	}
	start := c.clock().Now()
	c.report(State{Connected: true, Host: host})
	requested, err = c.serve(ctx, conn)
	return c.clock().Now().Sub(start), requested, err
}

// connect opens a connection and dials its socket.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	ep, err := Open(ctx, c.httpClient(), c.apiBase(), OpenRequest{
		ClientID:      c.ClientID,
		ClientSecret:  c.ClientSecret,
		Subscriptions: c.Subscriptions,
		UserAgent:     c.UserAgent,
	})
	if err != nil {
		return nil, "", err
	}
	target, err := ep.URL()
	if err != nil {
		return nil, "", err
	}
	conn, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{HTTPClient: c.httpClient()})
	if err != nil {
		return nil, "", withoutTicket(err, ep.Ticket)
	}
	conn.SetReadLimit(maxFrameSize)
	u, _ := url.Parse(target)
	return conn, u.Host, nil
}

// withoutTicket rewrites a dial error, which can repeat the URL, without
// the ticket.
func withoutTicket(err error, ticket string) error {
	msg := err.Error()
	for _, t := range []string{ticket, url.QueryEscape(ticket)} {
		msg = strings.ReplaceAll(msg, t, "REDACTED")
	}
	return errors.New("connecting the Stream socket: " + msg)
}

// serve reads frames until the socket closes or ctx ends, answering
// DingTalk's ping and disconnect frames itself and passing the others to
// the Handler. It returns once every Handler call returned.
func (c *Client) serve(ctx context.Context, conn *websocket.Conn) (requested bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	var handlers sync.WaitGroup
	defer func() {
		cancel()
		handlers.Wait()
	}()
	// Reads do not take ctx: coder/websocket closes the socket abruptly
	// when a read's context ends, while Caddy's exit should close it
	// normally.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close(websocket.StatusNormalClosure, "client stopping") })
	defer stop()
	go c.keepAlive(sctx, conn)

	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			_ = conn.CloseNow()
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, fmt.Errorf("the Stream socket closed: %w", err)
		}
		f := new(Frame)
		if err := json.Unmarshal(data, f); err != nil || f.Headers == nil {
			continue // nothing to ack it with
		}
		switch {
		case f.Type == TypeSystem && f.Topic() == TopicPing:
			c.write(sctx, conn, NewAck(f.MessageID(), CodeOK, f.Data))
		case f.Type == TypeSystem && f.Topic() == TopicDisconnect:
			c.write(sctx, conn, NewAck(f.MessageID(), CodeOK, ""))
			_ = conn.Close(websocket.StatusNormalClosure, "disconnect acknowledged")
			return true, nil
		default:
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				c.write(sctx, conn, c.handle(sctx, f))
			}()
		}
	}
}

// handle passes f to the Handler, or acks it CodeNotFound without one.
func (c *Client) handle(ctx context.Context, f *Frame) Ack {
	if c.Handler == nil {
		return NewAck(f.MessageID(), CodeNotFound, "")
	}
	ack := c.Handler(ctx, f)
	if ack.Headers == nil {
		ack.Headers = map[string]string{}
	}
	if ack.Headers[HeaderMessageID] == "" {
		ack.Headers[HeaderMessageID] = f.MessageID()
	}
	if ack.Headers[HeaderContentType] == "" {
		ack.Headers[HeaderContentType] = ContentTypeJSON
	}
	return ack
}

// write sends ack. A failed write closes the socket, which ends serve: the
// frame is then delivered again on the next connection.
func (c *Client) write(ctx context.Context, conn *websocket.Conn, ack Ack) {
	data, err := json.Marshal(ack)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_ = conn.Write(ctx, websocket.MessageText, data)
}

// keepAlive pings the socket every KeepAlive until ctx ends; a ping that
// gets no pong within KeepAlive closes the socket.
func (c *Client) keepAlive(ctx context.Context, conn *websocket.Conn) {
	every := c.KeepAlive
	if every <= 0 {
		every = DefaultKeepAlive
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pingCtx, cancel := context.WithTimeout(ctx, every)
		err := conn.Ping(pingCtx)
		cancel()
		if err != nil {
			_ = conn.CloseNow()
			return
		}
	}
}

func (c *Client) report(s State) {
	if c.OnState != nil {
		c.OnState(s)
	}
}

func (c *Client) apiBase() string {
	if c.APIBase != "" {
		return c.APIBase
	}
	return DefaultAPIBase
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func (c *Client) clock() Clock {
	if c.Clock != nil {
		return c.Clock
	}
	return systemClock{}
}

// systemClock is the Clock of the system.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
