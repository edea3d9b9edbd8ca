package openapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// The robot APIs' paths.
const (
	GroupSendPath = "/v1.0/robot/groupMessages/send"
	BatchSendPath = "/v1.0/robot/oToMessages/batchSend"
	DownloadPath  = "/v1.0/robot/messageFiles/download"
)

// MaxBatchUsers is how many users one 1:1 batch send reaches at most.
const MaxBatchUsers = 20

// Msg is a robot message in the OpenAPI's shape: a message template (msgKey)
// and its parameters. FromOutgoing converts a webhook-style message.
type Msg struct {
	Key   string            // e.g. "sampleText"
	Param map[string]string // e.g. {"content": "hi"}; sent as a JSON string
}

// SendResult is DingTalk's answer to a send.
type SendResult struct {
	// ProcessQueryKey identifies the send in DingTalk's read-status APIs.
	ProcessQueryKey string `json:"processQueryKey"`
	// InvalidStaffIDs are user ids of a batch send that reach nobody.
	InvalidStaffIDs []string `json:"invalidStaffIdList,omitempty"`
	// FlowControlledStaffIDs are users of a batch send DingTalk held back
	// because they got too many messages.
	FlowControlledStaffIDs []string `json:"flowControlledStaffIdList,omitempty"`
}

// SendToGroup posts m into the group conversationID (a callback's
// conversationId, which is the group's openConversationId).
func (c *Client) SendToGroup(ctx context.Context, conversationID string, m Msg) (*SendResult, error) {
	if conversationID == "" {
		return nil, fmt.Errorf("%w: a group send needs a conversation id", ErrBadParameter)
	}
	param, err := m.encodeParam()
	if err != nil {
		return nil, err
	}
	req := struct {
		RobotCode          string `json:"robotCode"`
		OpenConversationID string `json:"openConversationId"`
		MsgKey             string `json:"msgKey"`
		MsgParam           string `json:"msgParam"`
	}{c.robotCode, conversationID, m.Key, param}
	var res SendResult
	if err := c.Call(ctx, http.MethodPost, GroupSendPath, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// SendToUsers sends m as a 1:1 message from the robot to each of userIDs
// (staff ids, at most MaxBatchUsers).
func (c *Client) SendToUsers(ctx context.Context, userIDs []string, m Msg) (*SendResult, error) {
	if len(userIDs) == 0 || len(userIDs) > MaxBatchUsers {
		return nil, fmt.Errorf("%w: a 1:1 send needs 1 to %d user ids, not %d", ErrBadParameter, MaxBatchUsers, len(userIDs))
	}
	param, err := m.encodeParam()
	if err != nil {
		return nil, err
	}
	req := struct {
		RobotCode string   `json:"robotCode"`
		UserIDs   []string `json:"userIds"`
		MsgKey    string   `json:"msgKey"`
		MsgParam  string   `json:"msgParam"`
	}{c.robotCode, userIDs, m.Key, param}
	var res SendResult
	if err := c.Call(ctx, http.MethodPost, BatchSendPath, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// DownloadURL resolves the downloadCode of a received picture, file, audio,
// video or richText picture into a temporary URL of its bytes.
func (c *Client) DownloadURL(ctx context.Context, downloadCode string) (string, error) {
	if downloadCode == "" {
		return "", fmt.Errorf("%w: empty download code", ErrBadParameter)
	}
	req := struct {
		DownloadCode string `json:"downloadCode"`
		RobotCode    string `json:"robotCode"`
	}{downloadCode, c.robotCode}
	var res struct {
		DownloadURL string `json:"downloadUrl"`
	}
	if err := c.Call(ctx, http.MethodPost, DownloadPath, req, &res); err != nil {
		return "", err
	}
	if res.DownloadURL == "" {
		return "", fmt.Errorf("DingTalk OpenAPI %s: the answer has no downloadUrl", DownloadPath)
	}
	return res.DownloadURL, nil
}

// encodeParam returns msgParam, the parameters as a JSON string.
func (m Msg) encodeParam() (string, error) {
	if m.Key == "" {
		return "", fmt.Errorf("%w: a message needs a msgKey", ErrBadParameter)
	}
	param := m.Param
	if param == nil {
		param = map[string]string{} // "{}", not "null"
	}
	b, err := json.Marshal(param)
	if err != nil {
		return "", fmt.Errorf("encoding msgParam: %w", err)
	}
	return string(b), nil
}
