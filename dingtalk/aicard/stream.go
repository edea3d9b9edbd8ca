package aicard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// Defaults of a Stream.
const (
	DefaultInterval = 300 * time.Millisecond
	// DefaultMaxChars is DingTalk's advice for the content of one card:
	// about 3 KB (its error param.stream.content).
	DefaultMaxChars = 3000
	// defaultBacklog is how much text beyond the current card a Stream
	// holds before Write blocks.
	defaultBacklog = 64 << 10
	// DefaultMaxUnsent bounds the text a Stream keeps for the caller to post
	// as messages when no card shows it.
	DefaultMaxUnsent = 1 << 20
	// finishTimeout bounds the calls that end a card after the stream's
	// context ended: a card must not be left spinning because the answer
	// timed out.
	finishTimeout = 10 * time.Second
	// maxSlowdown bounds how far 403 QPS answers stretch the interval.
	maxSlowdown = 16
)

// Overflow says where content over a card's MaxChars goes.
type Overflow int

const (
	// OverflowNewCard finalizes the full card and continues in a new one.
	OverflowNewCard Overflow = iota
	// OverflowMessages finalizes the full card and hands the rest back
	// (Result.Unsent), for the caller to post as messages.
	OverflowMessages
)

// Config is how a Stream drives its cards.
type Config struct {
	// Client makes the card calls, through the robot's budget. Without
	// one, no card is made and Result.Unsent has the whole text.
	Client *openapi.Client
	// TemplateID is the card template; empty means openapi.DefaultCardTemplate.
	TemplateID string
	// Key is the template's streamed variable; empty means
	// openapi.DefaultCardKey.
	Key string
	// Interval is the least time between two updates; zero means
	// DefaultInterval.
	Interval time.Duration
	// MaxChars bounds a card's content in bytes of UTF-8, the unit of
	// DingTalk's limit (3000 is 3000 ASCII characters or 1000 Chinese
	// ones); zero means DefaultMaxChars.
	MaxChars int
	// Overflow says where content over MaxChars goes.
	Overflow Overflow
	// MaxUnsent bounds the text kept for Result.Unsent; zero means
	// DefaultMaxUnsent. Text beyond it is dropped and Result.Truncated set.
	MaxUnsent int
	// Clock paces the updates; nil means the system's time.
	Clock Clock
	// Hooks are told what the Stream does, for metrics.
	Hooks Hooks
}

// Hooks are called from a Stream's goroutine; each may be nil.
type Hooks struct {
	// Created: a card was created and delivered.
	Created func()
	// Updated: an update was sent. skipped counts the pieces of text that
	// arrived since the previous update beyond the first: those the
	// interval folded into this one instead of sending each.
	Updated func(skipped int)
	// Slowed: DingTalk answered an update with its QPS limit; the updates
	// slow down.
	Slowed func()
	// FirstUpdate: the first update of the stream was accepted, delay after
	// its first text arrived.
	FirstUpdate func(delay time.Duration)
}

// Target is the conversation the cards go to: a group (ConversationID, the
// callback's conversationId) or, when that is empty, a 1:1 chat with
// StaffID (the callback's senderStaffId).
type Target struct {
	ConversationID string
	StaffID        string
}

// Result is what a finished Stream did.
type Result struct {
	// Cards is how many cards were created.
	Cards int
	// Unsent is the text no card shows: all of it when the first card
	// could not be created, the rest after the first card with
	// OverflowMessages. The caller posts it as messages.
	Unsent string
	// Truncated: Unsent lost text over MaxUnsent.
	Truncated bool
	// CreateErr is why the first card could not be created, nil when it
	// was (or none was needed).
	CreateErr error
	// Err is the first failed update or finish that the Stream could not
	// make up for: the card may show less than the whole text.
	Err error
}

// Stream drives the cards of one streamed answer. Write gives it text,
// Close or Fail ends it; both wait until the last card is finalized.
type Stream struct {
	cfg    Config
	target Target
	ctx    context.Context
	clock  Clock

	mu        sync.Mutex
	text      []byte // not yet finalized in a card: the current card's content and the backlog; or the unsent text
	unsent    bool   // text is for Result.Unsent: no card takes more
	writes    int    // pieces of text since the last update
	dirty     bool   // text changed since the last update
	firstText time.Time
	ended     bool
	failNote  string // set by Fail: shown under the failed card's text
	failed    bool
	truncated bool
	room      chan struct{} // signalled when the backlog shrinks
	wake      chan struct{} // signalled when text arrives or the stream ends

	done     chan struct{} // closed when the goroutine is finished
	result   Result
	reported bool // the first update's delay was reported
}

// Start creates the first card at once (it shows "thinking" until text
// arrives) and drives it until Close or Fail. ctx bounds the stream's calls;
// when it ends, the card is finalized all the same.
func Start(ctx context.Context, cfg Config, target Target) *Stream {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxChars <= 0 {
		cfg.MaxChars = DefaultMaxChars
	}
	if cfg.MaxUnsent <= 0 {
		cfg.MaxUnsent = DefaultMaxUnsent
	}
	if cfg.Key == "" {
		cfg.Key = openapi.DefaultCardKey
	}
	s := &Stream{
		cfg: cfg, target: target, ctx: ctx, clock: cfg.Clock,
		room: make(chan struct{}, 1), wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	go s.run()
	return s
}

// Write adds text to the answer. It blocks while the backlog beyond the
// current card is full, until the card catches up or ctx or the stream's
// context ends: a slow card slows the backend down instead of filling
// memory.
func (s *Stream) Write(ctx context.Context, text string) error {
	if text == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.unsent && len(s.text) >= s.cfg.MaxChars+defaultBacklog {
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-s.done:
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		case <-s.ctx.Done():
			s.mu.Lock()
			return s.ctx.Err()
		}
		s.mu.Lock()
		if s.isDone() {
			break
		}
	}
	if s.firstText.IsZero() {
		s.firstText = s.clock.Now()
	}
	s.add(text)
	s.writes++
	s.dirty = true
	signal(s.wake)
	return nil
}

// add appends text, within MaxUnsent when it is unsent text.
func (s *Stream) add(text string) {
	if s.unsent && len(s.text)+len(text) > s.cfg.MaxUnsent {
		room := s.cfg.MaxUnsent - len(s.text)
		for room > 0 && !utf8.RuneStart(text[room]) {
			room--
		}
		text = text[:max(room, 0)]
		s.truncated = true
	}
	s.text = append(s.text, text...)
}

// Close ends the answer: the last card gets its whole content and the
// finished state. It returns what the Stream did.
func (s *Stream) Close() Result {
	return s.end(false, "")
}

// Fail ends the answer as broken: the card shows its content so far (what
// fits in it: text still waiting for a next card is dropped), then note
// (when not empty), marked as an error, and the failed state.
func (s *Stream) Fail(note string) Result {
	return s.end(true, note)
}

func (s *Stream) end(failed bool, note string) Result {
	s.mu.Lock()
	if !s.ended {
		s.ended, s.failed, s.failNote = true, failed, note
	}
	s.mu.Unlock()
	signal(s.wake)
	<-s.done
	return s.result
}

func (s *Stream) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// signal wakes the goroutine waiting on c, if any, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// card is the card being filled.
type card struct {
	id      string // outTrackId
	updated bool   // it had a streaming update
}

// run is the Stream's goroutine: it makes every card call, one at a time.
func (s *Stream) run() {
	defer close(s.done)
	var last time.Time // when the last update was sent
	slowdown := 1
	cur, err := s.create()
	if err != nil {
		s.result.CreateErr = err
		s.toUnsent()
	}
	for {
		s.mu.Lock()
		dirty, ended, unsent := s.dirty, s.ended, s.unsent
		s.mu.Unlock()
		if ended {
			break
		}
		if unsent || !dirty {
			s.waitWake()
			continue
		}
		if wait := last.Add(time.Duration(slowdown) * s.cfg.Interval).Sub(s.clock.Now()); !last.IsZero() && wait > 0 {
			s.waitTime(wait)
			continue
		}
		content, full, writes := s.snapshot()
		if full {
			if cur = s.rollover(cur, content, &last); cur == nil {
				s.toUnsent()
			}
			continue
		}
		last = s.clock.Now()
		err := s.send(openapi.WithoutQPSRetry(s.ctx), cur, content, false, false)
		switch {
		case errors.Is(err, openapi.ErrQPSLimit):
			slowdown = min(slowdown*2, maxSlowdown)
			s.unfold(writes)
			if s.cfg.Hooks.Slowed != nil {
				s.cfg.Hooks.Slowed()
			}
		case s.ctx.Err() != nil:
			s.unfold(writes)
			s.waitEnd() // nothing more can be sent before the end
		case err != nil:
			// The next snapshot may do better (a network error), or not
			// (a refused content): try again, more slowly.
			slowdown = min(slowdown*2, maxSlowdown)
			s.unfold(writes)
			s.fault(err)
		default:
			slowdown = max(slowdown/2, 1)
			s.updated(writes)
		}
	}
	s.finish(cur, &last)
}

// ErrNoClient is Result.CreateErr of a Stream without a Client: the text
// is all handed back.
var ErrNoClient = errors.New("no OpenAPI client to create cards with")

// create creates and delivers a new card, showing "thinking".
func (s *Stream) create() (*card, error) {
	if s.cfg.Client == nil {
		return nil, ErrNoClient
	}
	c := &card{id: openapi.NewGUID()}
	err := s.cfg.Client.CreateCard(s.ctx, openapi.NewCard{
		TemplateID: s.cfg.TemplateID, OutTrackID: c.id,
		ConversationID: s.target.ConversationID, StaffID: s.target.StaffID,
		Params: map[string]string{
			openapi.CardFlowStatusParam: string(openapi.CardProcessing),
			s.cfg.Key:                   "",
		},
	})
	if err != nil {
		return nil, err
	}
	s.result.Cards++
	if s.cfg.Hooks.Created != nil {
		s.cfg.Hooks.Created()
	}
	return c, nil
}

// send makes one streaming update of c; the first one of a card switches
// it to inputting.
func (s *Stream) send(ctx context.Context, c *card, content string, finalize, isError bool) error {
	if !c.updated {
		if err := s.cfg.Client.UpdateCard(ctx, c.id, map[string]string{
			openapi.CardFlowStatusParam: string(openapi.CardInputting),
		}); err != nil {
			return err
		}
		c.updated = true
	}
	return s.cfg.Client.StreamCard(ctx, openapi.CardContent{
		OutTrackID: c.id, Key: s.cfg.Key, Content: content, Finalize: finalize, Error: isError,
	})
}

// snapshot returns the current card's content: all the text, or, when the
// text is over MaxChars (full), the part that fills the card. It takes the
// pieces of text it folds in.
func (s *Stream) snapshot() (content string, full bool, writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writes, s.writes, s.dirty = s.writes, 0, false
	if len(s.text) > s.cfg.MaxChars {
		return string(s.text[:cutPoint(s.text, s.cfg.MaxChars)]), true, writes
	}
	return string(s.text), false, writes
}

// unfold gives back the pieces of an update that was not made.
func (s *Stream) unfold(writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes += writes
	s.dirty = true
}

// updated counts an update that was made.
func (s *Stream) updated(writes int) {
	if s.cfg.Hooks.Updated != nil {
		s.cfg.Hooks.Updated(max(writes-1, 0))
	}
	if s.reported {
		return
	}
	s.reported = true
	s.mu.Lock()
	first := s.firstText
	s.mu.Unlock()
	if !first.IsZero() && s.cfg.Hooks.FirstUpdate != nil {
		s.cfg.Hooks.FirstUpdate(s.clock.Now().Sub(first))
	}
}

// rollover finalizes the full card c with content, drops content from the
// text, and returns the card that takes the rest: a new one, or nil when
// the rest goes back as unsent text.
func (s *Stream) rollover(c *card, content string, last *time.Time) *card {
	*last = s.clock.Now()
	if err := s.finalize(c, content, false); err != nil {
		s.fault(err)
	}
	s.mu.Lock()
	s.text = append(s.text[:0], s.text[len(content):]...)
	s.dirty = true
	s.mu.Unlock()
	signal(s.room)
	if s.cfg.Overflow == OverflowMessages {
		return nil
	}
	next, err := s.create()
	if err != nil {
		s.fault(fmt.Errorf("continuing in a new card: %w", err))
		return nil
	}
	return next
}

// finalize sends c's last update and its final state, under a context that
// outlives the stream's by finishTimeout. Each call is tried again after a
// network error or a 5xx (a card left unfinalized would spin forever);
// Call already retries DingTalk's QPS limit.
func (s *Stream) finalize(c *card, content string, failed bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), finishTimeout)
	defer cancel()
	if err := s.retry(ctx, func() error { return s.send(ctx, c, content, true, failed) }); err != nil {
		return err
	}
	state := openapi.CardFinished
	if failed {
		state = openapi.CardFailed
	}
	return s.retry(ctx, func() error {
		return s.cfg.Client.UpdateCard(ctx, c.id, map[string]string{
			openapi.CardFlowStatusParam: string(state), s.cfg.Key: content,
		})
	})
}

// finalAttempts bounds the attempts of each call that ends a card.
const finalAttempts = 3

// retry calls f until it succeeds, fails for good (DingTalk refused the
// request: a 4xx), finalAttempts were made, or ctx ends.
func (s *Stream) retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = f()
		var apiErr *openapi.Error
		if err == nil || errors.As(err, &apiErr) && apiErr.Status < 500 || attempt == finalAttempts {
			return err
		}
		select {
		case <-s.clock.After(time.Duration(attempt) * 200 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// finish ends the stream: the cards take the rest of the text and the last
// one its final state; what no card takes becomes Result.Unsent.
func (s *Stream) finish(cur *card, last *time.Time) {
	for cur != nil {
		if wait := last.Add(s.cfg.Interval).Sub(s.clock.Now()); !last.IsZero() && wait > 0 {
			<-s.clock.After(wait) // the final update keeps the interval too
		}
		content, full, writes := s.snapshot()
		s.mu.Lock()
		failed, note := s.failed, s.failNote
		s.mu.Unlock()
		if full && !failed {
			cur = s.rollover(cur, content, last)
			continue
		}
		// A failed answer ends in the card it reached: what the backlog
		// holds beyond it is dropped rather than spread over new cards.
		if failed && note != "" {
			content += "\n\n" + note
		}
		if err := s.finalize(cur, content, failed); err != nil {
			s.fault(err)
		} else {
			s.updated(writes)
		}
		cur = nil
		s.mu.Lock()
		s.text = s.text[:0]
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.result.Unsent = string(s.text)
	s.result.Truncated = s.truncated
}

// toUnsent makes the text from now on unsent: kept for the caller.
func (s *Stream) toUnsent() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsent = true
	text := string(s.text)
	s.text = s.text[:0]
	s.add(text)
	signal(s.room)
}

// fault keeps the first error the card could not make up for.
func (s *Stream) fault(err error) {
	if s.result.Err == nil {
		s.result.Err = err
	}
}

// waitWake waits for text or the end.
func (s *Stream) waitWake() {
	select {
	case <-s.wake:
	case <-s.ctx.Done():
		s.waitEnd()
	}
}

// waitTime waits for d, or until text arrives or the stream ends.
func (s *Stream) waitTime(d time.Duration) {
	select {
	case <-s.clock.After(d):
	case <-s.wake:
	case <-s.ctx.Done():
		s.waitEnd()
	}
}

// waitEnd waits for Close or Fail.
func (s *Stream) waitEnd() {
	for {
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if ended {
			return
		}
		<-s.wake
	}
}

// cutPoint returns where to cut text to fill a card of max bytes: after the
// last line break in its second half, else at the last character boundary.
func cutPoint(text []byte, max int) int {
	for i := max - 1; i >= max/2; i-- {
		if text[i] == '\n' {
			return i + 1
		}
	}
	i := max
	for i > 0 && !utf8.RuneStart(text[i]) {
		i--
	}
	return i
}
