package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// deliver posts body to the gateway's /robot signed with secret at now,
// and like DingTalk sends it again when the connection failed before an
// answer came (as when a reload closes a keep-alive connection under the
// request); de-duplication makes that safe. It is safe for concurrent use
// and reports problems instead of failing the test, so that load
// generators can call it from their own goroutines.
func (g *gateway) deliver(secret string, body []byte, now time.Time) (response, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		req, err := dingtalktest.NewRequest(g.URL+"/robot", secret, body, now)
		if err != nil {
			return response{}, err
		}
		resp, err := g.client.Do(req)
		if err != nil {
			lastErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return response{}, fmt.Errorf("reading the answer: %w", err)
		}
		return response{Status: resp.StatusCode, Header: resp.Header, Body: string(answer)}, nil
	}
	return response{}, errors.Join(errors.New("no answer after 5 attempts"), lastErr)
}

// echoMsgID answers a callback with a text naming its msgId, so that a
// reply can be traced to the message it answers.
func echoMsgID(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m, err := dingtalk.ParseMessage(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "re:"+m.MsgID)
}

// answeredMsgID reads the msgId back from a post of echoMsgID's answer.
func answeredMsgID(post []byte) string {
	var m struct {
		Text struct{ Content string }
	}
	_ = json.Unmarshal(post, &m)
	return strings.TrimPrefix(m.Text.Content, "re:")
}

// problemLog collects what goroutines found, for the test to report.
type problemLog struct {
	mu   sync.Mutex
	seen []string
}

func (p *problemLog) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) < 20 { // enough to diagnose, bounded like everything else here
		p.seen = append(p.seen, fmt.Sprintf(format, args...))
	}
}

func (p *problemLog) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}
