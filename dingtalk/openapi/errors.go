package openapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// The kinds of failure DingTalk answers with. Test for them with errors.Is;
// errors.As with an *Error gives the details.
var (
	// ErrQPSLimit is DingTalk's HTTP 403 that a per-second limit is reached
	// (Forbidden.AccessDenied.QpsLimitForAppkeyAndApi, ...QpsLimitForApi).
	// Call retries it after a backoff while the context allows.
	ErrQPSLimit = errors.New("DingTalk's QPS limit is reached")
	// ErrQuotaExceeded is DingTalk's HTTP 403 that the organisation's monthly
	// call quota is spent (Forbidden.AccessDenied.ApiCountLimitForOrg). It is
	// never retried: nothing changes before the month ends.
	ErrQuotaExceeded = errors.New("DingTalk's monthly call quota is spent")
	// ErrBadParameter is DingTalk's HTTP 400 (codes param.*, invalidParameter.*),
	// or a request this package refuses before sending it.
	ErrBadParameter = errors.New("DingTalk refused a parameter")
	// ErrUnauthorized is HTTP 401, or 403 for a credential or permission
	// problem: a wrong AppKey/AppSecret, or a robot without the permission.
	ErrUnauthorized = errors.New("DingTalk refused the credentials")
)

// Error is an answer of DingTalk's OpenAPI outside 2xx. Every other failure
// (the network, a timeout, an unreadable answer) is a plain wrapped error.
// Neither ever contains the access token or the AppSecret.
type Error struct {
	Status    int    // the HTTP status
	Code      string // DingTalk's code, e.g. "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
	Message   string // DingTalk's message
	RequestID string // DingTalk's requestid, for a support ticket
	Path      string // the API that answered, e.g. "/v1.0/robot/groupMessages/send"
}

// Error describes the answer.
func (e *Error) Error() string {
	s := fmt.Sprintf("DingTalk OpenAPI %s answered HTTP %d", e.Path, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += fmt.Sprintf(" %q", e.Message)
	}
	return s
}

// Is matches the kind of the failure: ErrQPSLimit, ErrQuotaExceeded,
// ErrBadParameter or ErrUnauthorized.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrQPSLimit:
		return e.Status == http.StatusForbidden && strings.Contains(e.Code, "QpsLimit")
	case ErrQuotaExceeded:
		return e.Status == http.StatusForbidden && strings.Contains(e.Code, "ApiCountLimit")
	case ErrBadParameter:
		return e.Status == http.StatusBadRequest
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized ||
			e.Status == http.StatusForbidden && !strings.Contains(e.Code, "QpsLimit") && !strings.Contains(e.Code, "ApiCountLimit")
	}
	return false
}

// parseError reads DingTalk's {"code","message","requestid"} answer. A body
// that is not that JSON (the HTML page of an IP ban) leaves the code empty.
func parseError(path string, status int, body []byte) *Error {
	var answer struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"requestid"`
	}
	_ = json.Unmarshal(body, &answer)
	return &Error{Status: status, Code: answer.Code, Message: answer.Message, RequestID: answer.RequestID, Path: path}
}
