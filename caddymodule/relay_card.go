package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/aicard"
)

// AsyncCard makes the relay show a streamed answer as a DingTalk AI card
// that fills in while the backend writes it (the "typing" effect). The
// route answers as it would to a browser: Server-Sent Events in OpenAI's
// chat-completions form or plain (data: lines), or a chunked text/plain or
// text/markdown body. The bot needs an app_key: cards are made through
// DingTalk's OpenAPI, within the robot's api_rate budget.
type AsyncCard struct {
	// The card template. Default: DingTalk's AI card,
	// 382e4302-551d-4880-bf29-a30acfab2e71.schema.
	Template string `json:"template,omitempty"`

	// The template's variable the streamed text fills. Default: msgContent.
	Key string `json:"key,omitempty"`

	// The least time between two updates of a card; text that arrives in
	// between goes out with the next one. Default: 300ms.
	Interval caddy.Duration `json:"interval,omitempty"`

	// How much content one card holds before it is finalized and the
	// answer continues, in UTF-8 bytes, the unit of DingTalk's limit (3000
	// is 3000 ASCII characters or 1000 Chinese ones). Default: 3000.
	MaxChars int `json:"max_chars,omitempty"`

	// Where content over max_chars goes: "card", a new card (default), or
	// "messages", the rest as markdown messages when the answer ends.
	Overflow string `json:"overflow,omitempty"`

	// Show every 2xx text answer as a card, not only streamed ones. A
	// DingTalk message (JSON) is still posted as it is.
	Always bool `json:"always,omitempty"`
}

// The values of AsyncCard.Overflow.
const (
	overflowCard     = "card"
	overflowMessages = "messages"
)

func (c *AsyncCard) validate() error {
	switch {
	case c.Interval < 0 || c.MaxChars < 0:
		return errors.New("async card interval and max_chars must not be negative")
	case c.Overflow != "" && c.Overflow != overflowCard && c.Overflow != overflowMessages:
		return errors.New(`dingtalk: async card overflow must be "card" or "messages"`)
	}
	return nil
}

// cardStreamGrace is how long a card may keep updating after the route's
// timeout: its last updates and its final state.
const cardStreamGrace = time.Minute

// cardWriter is the response writer of a job whose answer may become a
// card. Until the status and headers show a streamed answer it is the
// recorded response; from then on it decodes the body as it arrives and
// hands the text to an aicard.Stream, keeping none of it.
type cardWriter struct {
	*recordedResponse
	rl    *relay
	j     *job
	ctx   context.Context // the route's
	dec   aicard.Decoder  // nil: the answer is recorded as usual
	early bool            // the card is made at the headers, not the first byte
	// stream is the card, from its start; cancel ends its context.
	stream *aicard.Stream
	cancel context.CancelFunc
	broken error // the answer could not be read as a stream, or the card took no more
}

// responseWriter is what the job's route writes its answer to: the
// recorded response, or a cardWriter around it when the relay makes cards.
func (rl *relay) responseWriter(j *job, ctx context.Context) http.ResponseWriter {
	if rl.cfg.Card == nil {
		return j.rec
	}
	j.card = &cardWriter{recordedResponse: j.rec, rl: rl, j: j, ctx: ctx}
	return j.card
}

// streaming reports whether the answer went to a card.
func (w *cardWriter) streaming() bool { return w != nil && w.stream != nil }

func (w *cardWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.recordedResponse.WriteHeader(status)
	if status < 200 || status > 299 {
		return
	}
	mediaType, _, _ := mime.ParseMediaType(w.header.Get("Content-Type"))
	dec, ok := aicard.NewDecoder(mediaType)
	switch {
	case ok && mediaType == "text/event-stream":
		w.dec, w.early = dec, true // a stream: show "thinking" at once
	case ok && w.header.Get("Content-Length") == "":
		w.dec, w.early = dec, true // chunked text
	case w.rl.cfg.Card.Always && mediaType != "application/json":
		w.dec, _ = aicard.NewDecoder("text/plain")
	}
	if w.early {
		w.start()
	}
}

func (w *cardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.dec == nil {
		return w.recordedResponse.Write(p)
	}
	if w.broken != nil {
		return 0, w.broken
	}
	if len(p) == 0 {
		return 0, nil
	}
	w.start()
	text, err := w.dec.Decode(p)
	if err == nil {
		err = w.stream.Write(w.ctx, text)
	}
	if err != nil {
		// An error stops the route's copy (reverse_proxy ends it): the job
		// fails and the card shows it.
		w.broken = err
		return 0, err
	}
	return len(p), nil
}

// start makes the card, once.
func (w *cardWriter) start() {
	if w.stream != nil {
		return
	}
	rl, v := w.rl, w.j.v
	cfg := rl.cfg.Card
	ctx, cancel := context.WithTimeout(rl.ctx, time.Duration(rl.cfg.Timeout)+cardStreamGrace)
	w.cancel = cancel
	overflow := aicard.OverflowNewCard
	if cfg.Overflow == overflowMessages {
		overflow = aicard.OverflowMessages
	}
	sc := aicard.Config{
		TemplateID: cfg.Template, Key: cfg.Key, Interval: time.Duration(cfg.Interval), MaxChars: cfg.MaxChars,
		Overflow: overflow, MaxUnsent: maxReplySize, Hooks: cardMetrics.hooks(v.Bot),
	}
	if api := v.signer.api; api != nil {
		sc.Client = api.client
	}
	target := aicard.Target{StaffID: v.Message.SenderStaffID}
	if v.Message.Conversation() == dingtalk.ConversationGroup {
		target = aicard.Target{ConversationID: v.Message.ConversationID}
	}
	w.stream = aicard.Start(ctx, sc, target)
}

// finishCard ends a job whose answer went to a card: the card is finalized,
// finished or, when the route failed, failed with the fallback text; text
// no card shows is posted as markdown.
func (rl *relay) finishCard(j *job, routeErr error, logger *zap.Logger) {
	w := j.card
	defer w.cancel()
	if routeErr == nil {
		text, err := w.dec.End()
		if err == nil {
			err = w.stream.Write(rl.ctx, text)
		}
		routeErr = err
	}
	if w.broken != nil {
		routeErr = w.broken // says more than reverse_proxy's abort it caused
	}
	var res aicard.Result
	outcome := outcomeSucceeded
	if routeErr != nil {
		outcome = failureOutcome(routeErr)
		logger.Warn("dingtalk async route failed", zap.String("outcome", outcome), zap.Error(routeErr))
		res = w.stream.Fail(rl.fallbackText(j))
	} else {
		res = w.stream.Close()
	}
	if res.Err != nil {
		logger.Warn("dingtalk card may not show the whole answer", zap.Int("cards", res.Cards), zap.Error(res.Err))
	}
	answered := res.Cards > 0
	if res.CreateErr != nil {
		cardMetrics.fallback(j.v.Bot)
		rl.noteRefusedCard(j.v.Bot, res.CreateErr, logger)
	}
	switch {
	case res.Cards == 0 && routeErr != nil:
		if fallback := rl.fallback(j); fallback != nil {
			rl.post(j, fallback, logger)
		}
	case res.Unsent != "":
		answered = rl.post(j, markdownMessage(res.Unsent, res.Truncated), logger) || answered
	}
	// As without a card, a failed route lets a redelivery try again.
	rl.finish(j, outcome, logger, answered && routeErr == nil)
}

// noteRefusedCard logs why a robot's card could not be made: once per
// robot and configuration at WARN, then at DEBUG, so that a robot without
// the permission does not fill the log with one line per message.
func (rl *relay) noteRefusedCard(bot string, err error, logger *zap.Logger) {
	if _, seen := rl.cardRefusals.LoadOrStore(bot, true); seen {
		logger.Debug("dingtalk card refused; the answer goes out as a message", zap.Error(err))
		return
	}
	hint := "is the template published, and does the app have the Card.Instance.Write and Card.Streaming.Write permissions?"
	if errors.Is(err, aicard.ErrNoClient) {
		hint = "the bot has no app_key"
	}
	logger.Warn("dingtalk card could not be made; answers go out as markdown messages (logged once per robot)",
		zap.String("hint", hint), zap.Error(err))
}

// fallbackText is the expanded fallback_text, or "".
func (rl *relay) fallbackText(j *job) string {
	if rl.cfg.FallbackText == "" {
		return ""
	}
	repl := j.req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	return repl.ReplaceAll(rl.cfg.FallbackText, "")
}

// markdownMessage is text as a markdown message, titled by its first line.
func markdownMessage(text string, truncated bool) []byte {
	if truncated {
		text += "\n\n…"
	}
	title := strings.TrimSpace(strings.TrimLeft(strings.SplitN(strings.TrimSpace(text), "\n", 2)[0], "#> "))
	if len(title) > 60 {
		cut := 60
		for cut > 0 && !utf8.RuneStart(title[cut]) {
			cut--
		}
		title = title[:cut] + "…"
	}
	msg, _ := json.Marshal(dingtalk.NewMarkdown(title, text)) // a message always marshals
	return msg
}
