package dingtalktest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
)

// WebhookPath is the path of DingTalk's sessionWebhook URLs.
const WebhookPath = "/robot/sendBySession"

// NewWebhook starts a fake DingTalk sessionWebhook on 127.0.0.1 with a free
// port: a Recorder that answers every post {"errcode":0,"errmsg":"ok"}, as
// DingTalk answers an accepted message. Like httptest.NewServer, it panics
// when it cannot listen.
func NewWebhook() *Recorder {
	rec, err := ListenWebhook("127.0.0.1:0")
	if err != nil {
		panic("dingtalktest: cannot listen for a fake sessionWebhook: " + err.Error())
	}
	return rec
}

// ListenWebhook is NewWebhook on addr, e.g. "127.0.0.1:9999" (port 0 picks
// a free one). The `caddy dingtalk send --webhook-listen` command uses it.
func ListenWebhook(addr string) (*Recorder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return startRecorder(&httptest.Server{Listener: ln, Config: &http.Server{}}, answerWebhook), nil
}

// answerWebhook is DingTalk's answer to an accepted sessionWebhook post.
func answerWebhook(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
}

// SessionURL returns a sessionWebhook URL on rec with a fresh session token,
// shaped like DingTalk's, for a callback's sessionWebhook field.
func (rec *Recorder) SessionURL() string {
	return rec.URL + WebhookPath + "?session=" + NewSession()
}

// NewSession returns a fresh session token: hex, so it needs no escaping in
// a query string.
func NewSession() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
