package openapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
)

// The AI card APIs' paths.
const (
	CardCreatePath    = "/v1.0/card/instances/createAndDeliver"
	CardStreamingPath = "/v1.0/card/streaming"
	CardInstancesPath = "/v1.0/card/instances"
)

// DefaultCardTemplate is DingTalk's built-in AI card template, and
// DefaultCardKey the variable of it that streamed content fills.
const (
	DefaultCardTemplate = "382e4302-551d-4880-bf29-a30acfab2e71.schema"
	DefaultCardKey      = "msgContent"
)

// CardStatus is an AI card's flowStatus, what the card shows around its
// content.
type CardStatus string

// The states of DingTalk's AI card template.
const (
	CardProcessing CardStatus = "1" // thinking: no content yet
	CardInputting  CardStatus = "2" // content arriving
	CardFinished   CardStatus = "3"
	CardFailed     CardStatus = "5"
)

// CardFlowStatusParam is the card parameter that holds its CardStatus.
const CardFlowStatusParam = "flowStatus"

// NewCard is an AI card to create and deliver into one conversation.
type NewCard struct {
	// TemplateID is the card template; empty means DefaultCardTemplate.
	TemplateID string
	// OutTrackID names the card in later updates; unique per card.
	OutTrackID string
	// Params are the card's first variables (string values of at most
	// 1 KB each), e.g. flowStatus and msgContent.
	Params map[string]string
	// ConversationID is, for a group, the callback's conversationId.
	// Empty means a 1:1 card to StaffID.
	ConversationID string
	// StaffID is, for a 1:1 chat, the user the card goes to (the
	// callback's senderStaffId).
	StaffID string
}

// CreateCard creates card and delivers it into its conversation as the
// robot. Permission: Card.Instance.Write.
func (c *Client) CreateCard(ctx context.Context, card NewCard) error {
	if card.OutTrackID == "" || (card.ConversationID == "" && card.StaffID == "") {
		return fmt.Errorf("%w: a card needs an outTrackId and a conversation or a user", ErrBadParameter)
	}
	template := card.TemplateID
	if template == "" {
		template = DefaultCardTemplate
	}
	params := card.Params
	if params == nil {
		params = map[string]string{}
	}
	type space struct {
		SupportForward bool `json:"supportForward"`
	}
	type deliver struct {
		SpaceType string `json:"spaceType,omitempty"`
		RobotCode string `json:"robotCode"`
	}
	req := struct {
		TemplateID string `json:"cardTemplateId"`
		OutTrackID string `json:"outTrackId"`
		CardData   struct {
			Params map[string]string `json:"cardParamMap"`
		} `json:"cardData"`
		CallbackType string   `json:"callbackType"`
		OpenSpaceID  string   `json:"openSpaceId"`
		GroupSpace   *space   `json:"imGroupOpenSpaceModel,omitempty"`
		GroupDeliver *deliver `json:"imGroupOpenDeliverModel,omitempty"`
		RobotSpace   *space   `json:"imRobotOpenSpaceModel,omitempty"`
		RobotDeliver *deliver `json:"imRobotOpenDeliverModel,omitempty"`
		UserIDType   int      `json:"userIdType"`
	}{TemplateID: template, OutTrackID: card.OutTrackID, CallbackType: "STREAM", UserIDType: 1}
	req.CardData.Params = params
	if card.ConversationID != "" {
		req.OpenSpaceID = "dtv1.card//IM_GROUP." + card.ConversationID
		req.GroupSpace = &space{SupportForward: true}
		req.GroupDeliver = &deliver{RobotCode: c.robotCode}
	} else {
		req.OpenSpaceID = "dtv1.card//IM_ROBOT." + card.StaffID
		req.RobotSpace = &space{SupportForward: true}
		req.RobotDeliver = &deliver{SpaceType: "IM_ROBOT", RobotCode: c.robotCode}
	}
	return c.Call(ctx, http.MethodPost, CardCreatePath, req, nil)
}

// CardContent is one streaming update of a card's variable.
type CardContent struct {
	OutTrackID string
	// Key is the variable; empty means DefaultCardKey.
	Key string
	// Content is the variable's whole new value (a full snapshot: DingTalk
	// shows the difference as typing).
	Content string
	// Finalize marks the last update of the variable.
	Finalize bool
	// Error shows the content as failed.
	Error bool
}

// StreamCard sends one streaming update of a card's variable. Each call
// carries a new guid, the same on every attempt of the call, so that a
// retried update is applied once. Permission: Card.Streaming.Write.
func (c *Client) StreamCard(ctx context.Context, u CardContent) error {
	if u.OutTrackID == "" {
		return fmt.Errorf("%w: a card update needs an outTrackId", ErrBadParameter)
	}
	key := u.Key
	if key == "" {
		key = DefaultCardKey
	}
	req := struct {
		OutTrackID string `json:"outTrackId"`
		GUID       string `json:"guid"`
		Key        string `json:"key"`
		Content    string `json:"content"`
		IsFull     bool   `json:"isFull"`
		IsFinalize bool   `json:"isFinalize"`
		IsError    bool   `json:"isError"`
	}{u.OutTrackID, NewGUID(), key, u.Content, true, u.Finalize, u.Error}
	return c.Call(ctx, http.MethodPut, CardStreamingPath, req, nil)
}

// UpdateCard sets variables of a created card, e.g. its flowStatus.
func (c *Client) UpdateCard(ctx context.Context, outTrackID string, params map[string]string) error {
	if outTrackID == "" {
		return fmt.Errorf("%w: a card update needs an outTrackId", ErrBadParameter)
	}
	req := struct {
		OutTrackID string `json:"outTrackId"`
		CardData   struct {
			Params map[string]string `json:"cardParamMap"`
		} `json:"cardData"`
	}{OutTrackID: outTrackID}
	req.CardData.Params = params
	return c.Call(ctx, http.MethodPut, CardInstancesPath, req, nil)
}

// NewGUID returns a random identifier for an outTrackId or a guid: 32 hex
// digits.
func NewGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand's documented contract)
	return hex.EncodeToString(b[:])
}
