package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// openAPISendTimeout bounds one message sent through the OpenAPI: waiting
// for the robot's budget and backing off from DingTalk's QPS limit included.
const openAPISendTimeout = time.Minute

// sender delivers a reply to a verified message: to the message's
// sessionWebhook while that works, and through DingTalk's OpenAPI, as the
// robot, when the robot has an AppKey and the sessionWebhook is missing,
// expired or answers errcode 300001. A text or markdown reply over the
// limits goes out as several messages, in order, each one the way the
// previous one went or, once the sessionWebhook failed, through the OpenAPI.
type sender struct {
	webhook *dingtalk.WebhookClient
	limits  dingtalk.SplitLimits
}

// delivery is what a delivery did.
type delivery struct {
	result   string // the last post's result, a post* word
	answered bool   // something was, or may have been, shown in the chat
}

// deliver sends reply, a DingTalk message JSON, in answer to v.
func (s *sender) deliver(ctx context.Context, v *Verified, reply []byte, logger *zap.Logger) delivery {
	parts := splitReply(reply, s.limits)
	api := v.signer.api
	viaAPI := api != nil && v.Message.SessionWebhook == ""
	var d delivery
	for i, part := range parts {
		fields := []zap.Field{}
		if len(parts) > 1 {
			fields = append(fields, zap.String("part", strconv.Itoa(i+1)+"/"+strconv.Itoa(len(parts))))
		}
		if !viaAPI {
			var err error
			d.result, err = s.postWebhook(ctx, v, part.body, &d, logger.With(fields...))
			if err == nil {
				continue
			}
			if api == nil || !errors.Is(err, dingtalk.ErrWebhookExpired) {
				return d
			}
			viaAPI = true
		}
		var err error
		d.result, err = sendAPI(ctx, v, api, part.msg, logger.With(fields...))
		if err != nil {
			return d
		}
		d.answered = true
	}
	return d
}

// replyPart is one message of a reply: its JSON, and the message parsed
// (nil when the JSON is not a message this module knows).
type replyPart struct {
	body []byte
	msg  *dingtalk.OutgoingMessage
}

// splitReply splits reply at lim. A reply that needs no split keeps its
// JSON as the route wrote it, fields unknown to this module included.
func splitReply(reply []byte, lim dingtalk.SplitLimits) []replyPart {
	var msg dingtalk.OutgoingMessage
	if err := json.Unmarshal(reply, &msg); err != nil {
		return []replyPart{{body: reply}}
	}
	split := msg.Split(lim)
	if len(split) == 1 {
		return []replyPart{{body: reply, msg: &msg}}
	}
	parts := make([]replyPart, len(split))
	for i, m := range split {
		body, err := json.Marshal(m)
		if err != nil {
			return []replyPart{{body: reply, msg: &msg}} // not reached: a message always marshals
		}
		parts[i] = replyPart{body: body, msg: m}
	}
	return parts
}

// postWebhook posts body to v's sessionWebhook, counts and logs the post,
// and notes in d whether it was (or may have been) shown.
func (s *sender) postWebhook(ctx context.Context, v *Verified, body []byte, d *delivery, logger *zap.Logger) (string, error) {
	start := time.Now()
	res, err := s.webhook.Post(ctx, v.Message, body)
	result := postResult(err)
	metrics.webhookPost(v.Bot, result, res.Attempts, time.Since(start))
	d.answered = d.answered || res.MaybeDelivered
	fields := []zap.Field{
		zap.String("webhook", dingtalk.RedactWebhook(v.Message.SessionWebhook)),
		zap.String("result", result),
		zap.Int("attempts", res.Attempts),
		zap.Int("status", res.Status),
	}
	if err != nil {
		var werr *dingtalk.WebhookError
		if errors.As(err, &werr) && werr.ErrCode != 0 {
			fields = append(fields, zap.Int("errcode", werr.ErrCode), zap.String("errmsg", werr.ErrMsg))
		}
		logger.Warn("dingtalk sessionWebhook post failed", append(fields, zap.Error(err))...)
		return result, err
	}
	logger.Info("dingtalk reply posted to the sessionWebhook", fields...)
	return result, nil
}

// sendAPI sends msg through the OpenAPI to where v came from: its group, or
// its sender in a 1:1 chat. It counts and logs the send.
func sendAPI(ctx context.Context, v *Verified, api *robotAPI, msg *dingtalk.OutgoingMessage, logger *zap.Logger) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, openAPISendTimeout)
	defer cancel()
	start := time.Now()
	to, err := sendAnswer(ctx, v.Message, api.client, msg)
	result := postOpenAPI
	if err != nil {
		result = postError
	}
	metrics.webhookPost(v.Bot, result, 1, time.Since(start))
	fields := []zap.Field{zap.String("result", result), zap.String("to", to)}
	if err != nil {
		logger.Warn("dingtalk reply could not be sent through the OpenAPI", append(fields, zap.Error(err))...)
		return result, err
	}
	logger.Info("dingtalk reply sent through the OpenAPI", fields...)
	return result, nil
}

// sendAnswer sends msg to m's conversation and says which kind it is:
// dingtalk.ConversationGroup or dingtalk.ConversationSingle.
func sendAnswer(ctx context.Context, m *dingtalk.Message, client *openapi.Client, msg *dingtalk.OutgoingMessage) (string, error) {
	if msg == nil {
		return m.Conversation(), fmt.Errorf("%w: the reply is not a message this module knows", openapi.ErrNoEquivalent)
	}
	param, err := openapi.FromOutgoing(msg)
	if err != nil {
		return m.Conversation(), err
	}
	if m.Conversation() == dingtalk.ConversationGroup {
		_, err = client.SendToGroup(ctx, m.ConversationID, param)
		return dingtalk.ConversationGroup, err
	}
	if m.SenderStaffID == "" {
		return dingtalk.ConversationSingle, errors.New("a 1:1 reply through the OpenAPI needs the sender's staff id, which external users do not have")
	}
	_, err = client.SendToUsers(ctx, []string{m.SenderStaffID}, param)
	return dingtalk.ConversationSingle, err
}
