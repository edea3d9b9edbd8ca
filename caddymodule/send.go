package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

func init() {
	caddy.RegisterModule(Send{})
}

const (
	// maxSendBody bounds a dingtalk_send request.
	maxSendBody = 1 << 20
	// sendTimeout bounds a dingtalk_send request's calls to DingTalk, the
	// backoff from its QPS limit included.
	sendTimeout = 30 * time.Second
	// sendBudgetWait is how long a dingtalk_send request waits for the
	// robot's budget before it is answered 429.
	sendBudgetWait = time.Second
)

// Send posts a message into a DingTalk chat through the OpenAPI, as a
// robot: internal services (a cron job, an alert) write into chats through
// one route of the gateway without holding any DingTalk credential. It is an
// internal door: put it behind `basic_auth` or `forward_auth`, on a listener
// only they reach.
//
// It takes `POST {"conversation_id": "cid...", "message": {...}}` for a
// group (the conversationId of the group's callbacks), or
// `{"user_ids": ["<staff id>", ...], "message": {...}}` for 1:1 messages to
// at most 20 users. The message is a DingTalk message JSON, as a reply
// (text, markdown, link, actionCard, feedCard), sent as its OpenAPI
// equivalent; `"text": "..."` instead of `"message"` sends a text. A text or
// markdown message over the limits goes out as several, in order.
//
// It answers 200 with `{"results": [<DingTalk's answer>, ...]}`, one per
// message sent; 400 for a request it cannot send (or whose parameters
// DingTalk refused); 429, with Retry-After, when the robot's api_rate allows
// no call within a second or DingTalk keeps answering that its QPS limit is
// reached; 502 when DingTalk fails otherwise.
type Send struct {
	RobotRef

	// How many characters a text or markdown message may have before it is
	// split. Default: 3500.
	MaxReplyChars int `json:"max_reply_chars,omitempty"`

	limits dingtalk.SplitLimits
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Send) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.dingtalk_send",
		New: func() caddy.Module { return new(Send) },
	}
}

// Provision sets up the robot's own client, if it has one.
func (s *Send) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if s.MaxReplyChars < 0 {
		return errors.New("dingtalk_send: max_reply_chars must not be negative")
	}
	s.limits = dingtalk.ReplyLimits(s.MaxReplyChars)
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	return s.provision("dingtalk_send")
}

// Cleanup releases the robot's own client.
func (s *Send) Cleanup() error {
	s.cleanup()
	return nil
}

// sendRequest is the body dingtalk_send takes.
type sendRequest struct {
	ConversationID string          `json:"conversation_id,omitempty"`
	UserIDs        []string        `json:"user_ids,omitempty"`
	Message        json.RawMessage `json:"message,omitempty"`
	Text           *string         `json:"text,omitempty"`
}

// ServeHTTP sends the message and answers with DingTalk's answers.
func (s *Send) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return s.fail(r, http.StatusMethodNotAllowed, errors.New("dingtalk_send takes POST"))
	}
	req, msg, err := readSendRequest(w, r)
	if err != nil {
		return s.fail(r, http.StatusBadRequest, err)
	}
	robot, err := s.robot()
	if err != nil {
		return s.fail(r, http.StatusInternalServerError, fmt.Errorf("%w: %v", errNoRobot, err))
	}
	limits := s.limits
	if s.MaxReplyChars == 0 {
		limits = robot.limits // the dingtalk handler's max_reply_chars
	}
	ctx, cancel := context.WithTimeout(r.Context(), sendTimeout)
	defer cancel()
	ctx = openapi.WithBudgetWait(ctx, sendBudgetWait)

	parts := msg.Split(limits)
	results := make([]*openapi.SendResult, 0, len(parts))
	for i, part := range parts {
		res, err := sendPart(ctx, robot.client, req, part)
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("after %d of %d messages: %w", i, len(parts), err)
			}
			return s.fail(r, sendStatus(w, err), err)
		}
		results = append(results, res)
	}
	s.logger.Info("dingtalk message sent through the OpenAPI",
		zap.Bool("group", req.ConversationID != ""), zap.Int("users", len(req.UserIDs)), zap.Int("messages", len(parts)))
	answer, err := json.Marshal(map[string]any{"results": results})
	if err != nil {
		return s.fail(r, http.StatusInternalServerError, err) // not reached: the results always marshal
	}
	return writeJSON(w, http.StatusOK, answer)
}

// readSendRequest reads and checks the body: one target, one message.
func readSendRequest(w http.ResponseWriter, r *http.Request) (*sendRequest, *dingtalk.OutgoingMessage, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSendBody))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req sendRequest
	if err := dec.Decode(&req); err != nil {
		return nil, nil, fmt.Errorf("the body is not the expected JSON: %w", err)
	}
	switch {
	case (req.ConversationID == "") == (len(req.UserIDs) == 0):
		return nil, nil, errors.New(`give either "conversation_id" or "user_ids"`)
	case len(req.UserIDs) > openapi.MaxBatchUsers:
		return nil, nil, fmt.Errorf(`"user_ids" has %d ids, at most %d are allowed`, len(req.UserIDs), openapi.MaxBatchUsers)
	case (req.Message == nil) == (req.Text == nil):
		return nil, nil, errors.New(`give either "message" or "text"`)
	case req.Text != nil:
		return &req, dingtalk.NewText(*req.Text), nil
	}
	var msg dingtalk.OutgoingMessage
	if err := json.Unmarshal(req.Message, &msg); err != nil {
		return nil, nil, fmt.Errorf(`"message" is not a DingTalk message: %w`, err)
	}
	if _, err := openapi.FromOutgoing(&msg); err != nil {
		return nil, nil, err
	}
	return &req, &msg, nil
}

// sendPart sends one message to the request's target.
func sendPart(ctx context.Context, client *openapi.Client, req *sendRequest, part *dingtalk.OutgoingMessage) (*openapi.SendResult, error) {
	msg, err := openapi.FromOutgoing(part)
	if err != nil {
		return nil, err
	}
	if req.ConversationID != "" {
		return client.SendToGroup(ctx, req.ConversationID, msg)
	}
	return client.SendToUsers(ctx, req.UserIDs, msg)
}

// sendStatus is the status a failed send is answered with; for 429 it sets
// Retry-After.
func sendStatus(w http.ResponseWriter, err error) int {
	var budget *openapi.BudgetError
	switch {
	case errors.As(err, &budget):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(budget.Wait.Seconds()))))
		return http.StatusTooManyRequests
	case errors.Is(err, openapi.ErrQPSLimit):
		w.Header().Set("Retry-After", "1")
		return http.StatusTooManyRequests
	case errors.Is(err, openapi.ErrBadParameter), errors.Is(err, openapi.ErrNoEquivalent):
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}

// fail logs a request dingtalk_send could not serve and returns the
// error Caddy answers it with. The body is not logged: messages are private.
func (s *Send) fail(r *http.Request, status int, err error) error {
	s.logger.Warn("dingtalk_send refused or failed a message",
		zap.Int("status", status), zap.String("remote_addr", clientAddr(r)), zap.Error(err))
	return caddyhttp.Error(status, err)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Send)(nil)
	_ caddy.CleanerUpper          = (*Send)(nil)
	_ caddyhttp.MiddlewareHandler = (*Send)(nil)
)
