package dingtalktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

// StreamConnectPath is where the fake Stream server accepts WebSockets.
const StreamConnectPath = "/connect"

// streamTicketTTL is how long a ticket admits a connection, as DingTalk's.
const streamTicketTTL = 90 * time.Second

// StreamServer is a fake DingTalk Stream service on loopback: the
// open-connection endpoint (stream.OpenPath, under URL) and the WebSocket
// endpoint it hands out. It accepts the one app it was made for, admits one
// connection per ticket, records every open request (without the secret),
// connection and ack, and is scripted by tests: send frames, drop sockets,
// refuse opens.
type StreamServer struct {
	*httptest.Server
	clientID, secret string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at every recorded change
	tickets  map[string]time.Time
	opens    []StreamOpen
	refusals int
	conns    []*streamConn // connected, oldest first
	accepted int
	acks     []stream.Ack
	other    [][]byte // what the clients sent that is not an ack
	nextID   int
	pings    int  // WebSocket pings the clients sent (their keep-alive)
	mute     bool // leave those pings unanswered
}

// StreamOpen is one open request the fake received.
type StreamOpen struct {
	ClientID      string
	Subscriptions []stream.Subscription
	UserAgent     string
	// Ticket is the ticket handed out, "" when the open was refused.
	Ticket string
}

// streamConn is one connected client.
type streamConn struct {
	ws     *websocket.Conn
	ticket string
	closed chan struct{}
}

// NewStreamServer starts a fake Stream server on 127.0.0.1 with a free port
// for the app with clientID and secret. Like httptest.NewServer, it panics
// when it cannot listen.
func NewStreamServer(clientID, secret string) *StreamServer {
	s, err := ListenStreamServer("127.0.0.1:0", clientID, secret)
	if err != nil {
		panic("dingtalktest: cannot listen for a fake Stream server: " + err.Error())
	}
	return s
}

// ListenStreamServer is NewStreamServer on addr (port 0 picks a free one).
// The `caddy dingtalk stream` command uses it.
func ListenStreamServer(addr, clientID, secret string) (*StreamServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &StreamServer{clientID: clientID, secret: secret, changed: make(chan struct{}), tickets: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+stream.OpenPath, s.open)
	mux.HandleFunc("GET "+StreamConnectPath, s.connect)
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	s.Start()
	return s, nil
}

// Close drops every socket, then stops the server.
func (s *StreamServer) Close() {
	s.Drop()
	s.Server.Close()
}

// changedLocked wakes everyone waiting for a change; s.mu is held.
func (s *StreamServer) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// open answers an open-connection request: the endpoint and a fresh ticket
// for the right credentials, 401 for others, 503 while refusing.
func (s *StreamServer) open(w http.ResponseWriter, r *http.Request) {
	var req stream.OpenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeStreamError(w, http.StatusBadRequest, "InvalidParameter", "the body is not an open request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.changedLocked()
	rec := StreamOpen{ClientID: req.ClientID, Subscriptions: req.Subscriptions, UserAgent: req.UserAgent}
	switch {
	case s.refusals > 0:
		s.refusals--
		s.opens = append(s.opens, rec)
		writeStreamError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "refused by the test")
		return
	case req.ClientID != s.clientID || req.ClientSecret != s.secret:
		s.opens = append(s.opens, rec)
		writeStreamError(w, http.StatusUnauthorized, "InvalidAuthentication", "unknown clientId or wrong clientSecret")
		return
	case len(req.Subscriptions) == 0:
		s.opens = append(s.opens, rec)
		writeStreamError(w, http.StatusBadRequest, "InvalidParameter", "no subscriptions")
		return
	}
	rec.Ticket = randomHex(16)
	s.tickets[rec.Ticket] = time.Now().Add(streamTicketTTL)
	s.opens = append(s.opens, rec)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(stream.Endpoint{
		Endpoint: "ws://" + r.Host + StreamConnectPath,
		Ticket:   rec.Ticket,
	})
}

func writeStreamError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": message})
}

// connect admits a WebSocket with a ticket handed out and not yet used,
// then records what the client sends until the socket closes.
func (s *StreamServer) connect(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	expires, ok := s.tickets[ticket]
	delete(s.tickets, ticket) // one connection per ticket
	s.mu.Unlock()
	if !ok || time.Now().After(expires) {
		http.Error(w, "unknown, used or expired ticket", http.StatusUnauthorized)
		return
	}
	// The client has its socket as soon as Accept wrote the handshake's
	// answer: registering it under the same lock means that Connected,
	// Send and Drop never miss a socket that its client already uses.
	s.mu.Lock()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OnPingReceived: s.pinged})
	if err != nil {
		s.mu.Unlock()
		return
	}
	ws.SetReadLimit(4 << 20)
	c := &streamConn{ws: ws, ticket: ticket, closed: make(chan struct{})}
	s.conns = append(s.conns, c)
	s.accepted++
	s.changedLocked()
	s.mu.Unlock()

	defer func() {
		_ = ws.CloseNow()
		s.mu.Lock()
		for i, other := range s.conns {
			if other == c {
				s.conns = append(s.conns[:i:i], s.conns[i+1:]...)
				break
			}
		}
		close(c.closed)
		s.changedLocked()
		s.mu.Unlock()
	}()
	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		var ack stream.Ack
		isAck := json.Unmarshal(data, &ack) == nil && ack.Code != 0 && ack.Headers != nil
		s.mu.Lock()
		if isAck {
			s.acks = append(s.acks, ack)
		} else {
			s.other = append(s.other, data)
		}
		s.changedLocked()
		s.mu.Unlock()
	}
}

// pinged records a client's WebSocket ping, and answers it unless muted.
func (s *StreamServer) pinged(context.Context, []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pings++
	s.changedLocked()
	return !s.mute
}

// Pings returns how many WebSocket pings (not SYSTEM ping frames, which
// the server sends) the clients sent so far: their own keep-alive.
func (s *StreamServer) Pings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings
}

// MutePings leaves the clients' WebSocket pings unanswered from now on, as
// a connection that silently died would, when mute is true.
func (s *StreamServer) MutePings(mute bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mute = mute
}

// RefuseOpens makes the next n open requests fail with 503.
func (s *StreamServer) RefuseOpens(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals = n
}

// Opens returns the open requests received so far.
func (s *StreamServer) Opens() []StreamOpen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StreamOpen(nil), s.opens...)
}

// Connected returns how many sockets are connected now.
func (s *StreamServer) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Accepted returns how many sockets were ever connected.
func (s *StreamServer) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Tickets returns the tickets of the sockets connected now, oldest first.
func (s *StreamServer) Tickets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tickets []string
	for _, c := range s.conns {
		tickets = append(tickets, c.ticket)
	}
	return tickets
}

// Acks returns every ack received so far, in order.
func (s *StreamServer) Acks() []stream.Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stream.Ack(nil), s.acks...)
}

// NotAcks returns what clients sent that is not an ack.
func (s *StreamServer) NotAcks() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.other...)
}

// Wait returns once cond holds, or ctx's error once ctx ends first. cond
// reads the server through its methods (Connected, Accepted, Acks, Opens...)
// and is called again after every change the server records.
func (s *StreamServer) Wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// WaitConnected waits until n sockets are connected at once.
func (s *StreamServer) WaitConnected(ctx context.Context, n int) error {
	return s.Wait(ctx, func() bool { return s.Connected() == n })
}

// WaitAck waits for the ack of the frame with messageID and returns it.
func (s *StreamServer) WaitAck(ctx context.Context, messageID string) (stream.Ack, error) {
	var found stream.Ack
	err := s.Wait(ctx, func() bool {
		for _, ack := range s.Acks() {
			if ack.MessageID() == messageID {
				found = ack
				return true
			}
		}
		return false
	})
	return found, err
}

// ErrNotConnected is returned by Send when no client connected in time.
var ErrNotConnected = errors.New("dingtalktest: no Stream client is connected")

// Send writes f to the newest connected socket, waiting for one until ctx ends (DingTalk picks one of an
// app's connections; a newer one, users report, displaces the older), and
// returns its messageId. A frame without a messageId gets a fresh one, and
// a frame without headers the spec version and time.
func (s *StreamServer) Send(ctx context.Context, f stream.Frame) (string, error) {
	if err := s.Wait(ctx, func() bool { return s.Connected() > 0 }); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.mu.Unlock()
		return "", ErrNotConnected
	}
	c := s.conns[len(s.conns)-1]
	headers := map[string]string{}
	for k, v := range f.Headers {
		headers[k] = v
	}
	if headers[stream.HeaderMessageID] == "" {
		s.nextID++
		headers[stream.HeaderMessageID] = "fake-" + strconv.Itoa(s.nextID) + "-" + randomHex(4)
	}
	s.mu.Unlock()
	if headers[stream.HeaderTime] == "" {
		headers[stream.HeaderTime] = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	if headers[stream.HeaderContentType] == "" {
		headers[stream.HeaderContentType] = stream.ContentTypeJSON
	}
	if f.SpecVersion == "" {
		f.SpecVersion = "1.0"
	}
	f.Headers = headers
	data, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	return headers[stream.HeaderMessageID], c.ws.Write(ctx, websocket.MessageText, data)
}

// SendRobotMessage sends body, a robot message's JSON as an HTTP-mode robot
// would receive it, as a CALLBACK frame on the robot topic.
func (s *StreamServer) SendRobotMessage(ctx context.Context, body []byte) (string, error) {
	return s.Send(ctx, stream.Frame{Type: stream.TypeCallback, Headers: map[string]string{
		stream.HeaderTopic: stream.TopicRobot, stream.HeaderAppID: s.clientID,
	}, Data: string(body)})
}

// SendCard sends data as a card callback frame.
func (s *StreamServer) SendCard(ctx context.Context, data []byte) (string, error) {
	return s.Send(ctx, stream.Frame{Type: stream.TypeCallback, Headers: map[string]string{
		stream.HeaderTopic: stream.TopicCard, stream.HeaderAppID: s.clientID,
	}, Data: string(data)})
}

// SendEvent sends data as an EVENT frame of eventType with eventID.
func (s *StreamServer) SendEvent(ctx context.Context, eventType, eventID string, data []byte) (string, error) {
	return s.Send(ctx, stream.Frame{Type: stream.TypeEvent, Headers: map[string]string{
		stream.HeaderTopic: eventType, stream.HeaderEventType: eventType, stream.HeaderEventID: eventID,
		stream.HeaderEventCorpID: "dingcorp1", stream.HeaderEventBornTime: strconv.FormatInt(time.Now().UnixMilli(), 10),
		stream.HeaderAppID: s.clientID,
	}, Data: string(data)})
}

// Ping sends a SYSTEM ping carrying opaque, which the client must echo.
func (s *StreamServer) Ping(ctx context.Context, opaque string) (string, error) {
	data, _ := json.Marshal(map[string]string{"opaque": opaque})
	return s.Send(ctx, stream.Frame{Type: stream.TypeSystem, Headers: map[string]string{
		stream.HeaderTopic: stream.TopicPing,
	}, Data: string(data)})
}

// Disconnect sends a SYSTEM disconnect, after which the client acks and
// connects again with a new ticket.
func (s *StreamServer) Disconnect(ctx context.Context) (string, error) {
	return s.Send(ctx, stream.Frame{Type: stream.TypeSystem, Headers: map[string]string{
		stream.HeaderTopic: stream.TopicDisconnect,
	}, Data: `{"reason":"the test asked"}`})
}

// Drop closes every connected socket abruptly, as a network failure would,
// and waits until their handlers are done.
func (s *StreamServer) Drop() {
	s.mu.Lock()
	conns := append([]*streamConn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.CloseNow()
		<-c.closed
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
