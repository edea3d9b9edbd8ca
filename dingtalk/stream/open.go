package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// DefaultAPIBase is DingTalk's OpenAPI, where connections are opened.
const DefaultAPIBase = "https://api.dingtalk.com"

// OpenPath is the path of the open-connection endpoint under the API base.
const OpenPath = "/v1.0/gateway/connections/open"

// maxOpenAnswer bounds how much of the open endpoint's answer is read.
const maxOpenAnswer = 64 << 10

// Subscription is one type and topic a connection receives.
type Subscription struct {
	Type  string `json:"type"`
	Topic string `json:"topic"`
}

// OpenRequest is the body of an open-connection request.
type OpenRequest struct {
	ClientID      string         `json:"clientId"`
	ClientSecret  string         `json:"clientSecret"`
	Subscriptions []Subscription `json:"subscriptions"`
	UserAgent     string         `json:"ua"`
	LocalIP       string         `json:"localIp"`
}

// Endpoint is the answer of an open-connection request: where to connect
// the WebSocket, and the ticket that admits one connection there.
type Endpoint struct {
	Endpoint string `json:"endpoint"`
	Ticket   string `json:"ticket"`
}

// URL returns the WebSocket URL to dial: the endpoint with the ticket added
// to its query.
func (e Endpoint) URL() (string, error) {
	u, err := url.Parse(e.Endpoint)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return "", errors.New("the open endpoint answered an endpoint that is not a ws:// or wss:// URL")
	}
	q := u.Query()
	q.Set("ticket", e.Ticket)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// OpenError is a refusal of the open endpoint: a status outside 2xx, with
// DingTalk's error code and message when the answer had them.
type OpenError struct {
	Status  int
	Code    string
	Message string
}

func (e *OpenError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("opening a Stream connection: HTTP %d", e.Status)
	}
	return fmt.Sprintf("opening a Stream connection: HTTP %d, %s: %s", e.Status, e.Code, e.Message)
}

// Open asks apiBase for a connection endpoint and ticket. Errors never
// contain the secret or the ticket.
func Open(ctx context.Context, hc *http.Client, apiBase string, req OpenRequest) (Endpoint, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Endpoint{}, err
	}
	target := strings.TrimSuffix(apiBase, "/") + OpenPath
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return Endpoint{}, fmt.Errorf("opening a Stream connection: api_base is not a URL")
	}
	httpReq.Header.Set("Content-Type", ContentTypeJSON)
	httpReq.Header.Set("Accept", ContentTypeJSON)
	resp, err := hc.Do(httpReq)
	if err != nil {
		return Endpoint{}, fmt.Errorf("opening a Stream connection: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxOpenAnswer))
	if err != nil {
		return Endpoint{}, fmt.Errorf("opening a Stream connection: reading the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var refusal struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(answer, &refusal)
		return Endpoint{}, &OpenError{Status: resp.StatusCode, Code: refusal.Code, Message: refusal.Message}
	}
	var ep Endpoint
	if err := json.Unmarshal(answer, &ep); err != nil || ep.Endpoint == "" || ep.Ticket == "" {
		return Endpoint{}, errors.New("opening a Stream connection: the answer has no endpoint and ticket")
	}
	return ep, nil
}
