package dingtalktest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The AI card paths the fake answers.
const (
	OpenAPICardCreatePath    = "/v1.0/card/instances/createAndDeliver"
	OpenAPICardStreamingPath = "/v1.0/card/streaming"
	OpenAPICardInstancesPath = "/v1.0/card/instances"
)

// FailNoPermission is DingTalk's answer to an app without the permission an
// API needs (for cards: Card.Instance.Write, Card.Streaming.Write).
var FailNoPermission = Failure{http.StatusForbidden, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "no permission for this API"}

// Card is an AI card the fake created, with everything later done to it.
type Card struct {
	OutTrackID  string
	TemplateID  string
	OpenSpaceID string // dtv1.card//IM_GROUP.<conversationId> or dtv1.card//IM_ROBOT.<staffId>
	RobotCode   string
	Created     time.Time
	Params      map[string]string // the variables now, after every instance update
	Updates     []CardUpdate      // the streaming updates, in order
	States      []string          // every flowStatus it was given, the first at creation
}

// CardUpdate is one streaming update the fake accepted.
type CardUpdate struct {
	GUID     string
	Key      string
	Content  string
	IsFull   bool
	Finalize bool
	Error    bool
	At       time.Time
}

// Content returns the card's streamed variable as last sent, or "".
func (c Card) Content() string {
	if len(c.Updates) == 0 {
		return ""
	}
	return c.Updates[len(c.Updates)-1].Content
}

// State returns the card's last flowStatus.
func (c Card) State() string {
	if len(c.States) == 0 {
		return ""
	}
	return c.States[len(c.States)-1]
}

// cardState is the fake's cards and the limits it plays on card calls.
type cardState struct {
	cards    map[string]*Card // by outTrackId
	order    []string
	limit    int                    // calls per second per card API before 403; 0: none
	seconds  map[string]secondCount // by path
	delay    time.Duration          // how long each card call is held
	inflight map[string]int         // card calls being answered, by path
	maxIn    map[string]int         // the most at once, by path
	changed  chan struct{}          // closed and replaced on each accepted card call
	mu       sync.Mutex             // guards all of the above
}

type secondCount struct {
	second int64
	count  int
}

func newCardState() *cardState {
	return &cardState{
		cards: map[string]*Card{}, seconds: map[string]secondCount{},
		inflight: map[string]int{}, maxIn: map[string]int{}, changed: make(chan struct{}),
	}
}

// LimitCardRate makes the fake answer DingTalk's 403 QPS limit to a card API
// called more than perSecond times in one calendar second, the way DingTalk
// counts; 0 lifts the limit. Refused calls do not count.
func (f *OpenAPI) LimitCardRate(perSecond int) {
	f.card.mu.Lock()
	defer f.card.mu.Unlock()
	f.card.limit = perSecond
}

// DelayCardCalls makes the fake hold every card call for d before answering,
// like a distant DingTalk, so that a caller's overlapping calls would show.
func (f *OpenAPI) DelayCardCalls(d time.Duration) {
	f.card.mu.Lock()
	defer f.card.mu.Unlock()
	f.card.delay = d
}

// Cards returns the cards created so far, in order of creation.
func (f *OpenAPI) Cards() []Card {
	f.card.mu.Lock()
	defer f.card.mu.Unlock()
	cards := make([]Card, 0, len(f.card.order))
	for _, id := range f.card.order {
		c := *f.card.cards[id]
		c.Params = cloneParams(c.Params)
		c.Updates = append([]CardUpdate(nil), c.Updates...)
		c.States = append([]string(nil), c.States...)
		cards = append(cards, c)
	}
	return cards
}

// CardsChanged returns a channel closed at the next accepted card call, to
// wait for one with a deadline instead of polling.
func (f *OpenAPI) CardsChanged() <-chan struct{} {
	f.card.mu.Lock()
	defer f.card.mu.Unlock()
	return f.card.changed
}

// MaxCardCallsInFlight returns the most calls to the card API path that the
// fake was answering at the same time.
func (f *OpenAPI) MaxCardCallsInFlight(path string) int {
	f.card.mu.Lock()
	defer f.card.mu.Unlock()
	return f.card.maxIn[path]
}

func isCardPath(path string) bool {
	return path == OpenAPICardCreatePath || path == OpenAPICardStreamingPath || path == OpenAPICardInstancesPath
}

// answerCard answers an authorized card call.
func (f *OpenAPI) answerCard(w http.ResponseWriter, r *http.Request, app OpenAPIApp, body []byte) {
	s := f.card
	path := r.URL.Path
	want := http.MethodPut
	if path == OpenAPICardCreatePath {
		want = http.MethodPost
	}
	if r.Method != want {
		writeOpenAPIError(w, Failure{http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed"})
		return
	}
	s.mu.Lock()
	s.inflight[path]++
	s.maxIn[path] = max(s.maxIn[path], s.inflight[path])
	delay := s.delay
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight[path]--
		s.mu.Unlock()
	}()
	if delay > 0 {
		time.Sleep(delay) // plays DingTalk's latency; nothing waits on it
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.limit > 0 {
		sc := s.seconds[path]
		if sc.second != now.Unix() {
			sc = secondCount{second: now.Unix()}
		}
		if sc.count >= s.limit {
			writeOpenAPIError(w, FailQPSLimit)
			return
		}
		sc.count++
		s.seconds[path] = sc
	}
	var failure string
	switch path {
	case OpenAPICardCreatePath:
		failure = s.create(app, body, now)
	case OpenAPICardStreamingPath:
		failure = s.stream(body, now)
	case OpenAPICardInstancesPath:
		failure = s.update(body)
	}
	if failure != "" {
		writeOpenAPIError(w, Failure{http.StatusBadRequest, "param.invalid", failure})
		return
	}
	close(s.changed)
	s.changed = make(chan struct{})
	writeOpenAPIJSON(w, map[string]any{"success": true, "result": map[string]any{}})
}

// create checks and records a createAndDeliver; it returns why it refuses.
func (s *cardState) create(app OpenAPIApp, body []byte, now time.Time) string {
	var req struct {
		TemplateID string `json:"cardTemplateId"`
		OutTrackID string `json:"outTrackId"`
		CardData   struct {
			Params map[string]string `json:"cardParamMap"`
		} `json:"cardData"`
		CallbackType string `json:"callbackType"`
		OpenSpaceID  string `json:"openSpaceId"`
		GroupDeliver *struct {
			RobotCode string `json:"robotCode"`
		} `json:"imGroupOpenDeliverModel"`
		RobotDeliver *struct {
			SpaceType string `json:"spaceType"`
			RobotCode string `json:"robotCode"`
		} `json:"imRobotOpenDeliverModel"`
	}
	if json.Unmarshal(body, &req) != nil {
		return "the body is not the expected JSON"
	}
	group := strings.HasPrefix(req.OpenSpaceID, "dtv1.card//IM_GROUP.") && len(req.OpenSpaceID) > len("dtv1.card//IM_GROUP.")
	robot := strings.HasPrefix(req.OpenSpaceID, "dtv1.card//IM_ROBOT.") && len(req.OpenSpaceID) > len("dtv1.card//IM_ROBOT.")
	var robotCode string
	switch {
	case req.TemplateID == "" || req.OutTrackID == "":
		return "cardTemplateId and outTrackId are required"
	case s.cards[req.OutTrackID] != nil:
		return "outTrackId is taken"
	case group && req.GroupDeliver != nil:
		robotCode = req.GroupDeliver.RobotCode
	case robot && req.RobotDeliver != nil && req.RobotDeliver.SpaceType == "IM_ROBOT":
		robotCode = req.RobotDeliver.RobotCode
	default:
		return "openSpaceId does not match its deliver model"
	}
	if robotCode != app.RobotCode {
		return "robotCode does not belong to the token's app"
	}
	c := &Card{
		OutTrackID: req.OutTrackID, TemplateID: req.TemplateID, OpenSpaceID: req.OpenSpaceID,
		RobotCode: robotCode, Created: now, Params: cloneParams(req.CardData.Params),
	}
	if st, ok := c.Params["flowStatus"]; ok {
		c.States = append(c.States, st)
	}
	s.cards[req.OutTrackID] = c
	s.order = append(s.order, req.OutTrackID)
	return ""
}

// stream records a streaming update; it returns why it refuses.
func (s *cardState) stream(body []byte, now time.Time) string {
	var req struct {
		OutTrackID string `json:"outTrackId"`
		GUID       string `json:"guid"`
		Key        string `json:"key"`
		Content    string `json:"content"`
		IsFull     bool   `json:"isFull"`
		IsFinalize bool   `json:"isFinalize"`
		IsError    bool   `json:"isError"`
	}
	if json.Unmarshal(body, &req) != nil {
		return "the body is not the expected JSON"
	}
	c := s.cards[req.OutTrackID]
	switch {
	case c == nil:
		return "no card has this outTrackId"
	case req.GUID == "" || req.Key == "":
		return "guid and key are required"
	}
	for _, u := range c.Updates {
		if u.GUID == req.GUID {
			return "" // idempotent: a retried update is applied once
		}
	}
	c.Updates = append(c.Updates, CardUpdate{
		GUID: req.GUID, Key: req.Key, Content: req.Content, IsFull: req.IsFull,
		Finalize: req.IsFinalize, Error: req.IsError, At: now,
	})
	return ""
}

// update records an instance update; it returns why it refuses.
func (s *cardState) update(body []byte) string {
	var req struct {
		OutTrackID string `json:"outTrackId"`
		CardData   struct {
			Params map[string]string `json:"cardParamMap"`
		} `json:"cardData"`
	}
	if json.Unmarshal(body, &req) != nil {
		return "the body is not the expected JSON"
	}
	c := s.cards[req.OutTrackID]
	if c == nil {
		return "no card has this outTrackId"
	}
	for k, v := range req.CardData.Params {
		c.Params[k] = v
	}
	if st, ok := req.CardData.Params["flowStatus"]; ok {
		c.States = append(c.States, st)
	}
	return ""
}

func cloneParams(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
