package dingtalktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// The OpenAPI paths the fake answers, as DingTalk names them.
const (
	OpenAPITokenPath     = "/v1.0/oauth2/accessToken"
	OpenAPIGroupSendPath = "/v1.0/robot/groupMessages/send"
	OpenAPIBatchSendPath = "/v1.0/robot/oToMessages/batchSend"
	OpenAPIDownloadPath  = "/v1.0/robot/messageFiles/download"
	// OpenAPIMediaPath prefixes the temporary URLs the fake hands out for
	// media; DingTalk's are on another host, signed, with no token needed.
	OpenAPIMediaPath = "/media/"
)

// maxGroupMsgParam is DingTalk's limit on a group send's msgParam.
const maxGroupMsgParam = 15000

// Failure is an answer the fake gives instead of the real one.
type Failure struct {
	Status  int
	Code    string
	Message string
}

// The failures DingTalk answers with (protocol notes §7).
var (
	FailQPSLimit     = Failure{http.StatusForbidden, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "QPS limit for appkey and api"}
	FailQuota        = Failure{http.StatusForbidden, "Forbidden.AccessDenied.ApiCountLimitForOrg", "monthly API call quota exceeded"}
	FailBadParameter = Failure{http.StatusBadRequest, "param.invalid", "invalid parameter"}
	FailUnauthorized = Failure{http.StatusUnauthorized, "InvalidAuthentication", "invalid access token"}
	FailServer       = Failure{http.StatusInternalServerError, "ServiceUnavailable", "service unavailable"}
)

// OpenAPIApp is a robot application the fake knows.
type OpenAPIApp struct {
	AppKey    string
	AppSecret string
	RobotCode string // default: AppKey
}

// Media is a file the fake serves for a download code.
type Media struct {
	ContentType string
	Body        []byte
}

// Sent is a robot message the fake accepted.
type Sent struct {
	Path           string // OpenAPIGroupSendPath or OpenAPIBatchSendPath
	RobotCode      string
	ConversationID string   // group sends
	UserIDs        []string // 1:1 sends
	MsgKey         string
	Param          map[string]string // msgParam, decoded
	At             time.Time
}

// OpenAPI is a fake of DingTalk's OpenAPI on 127.0.0.1 that speaks the real
// protocol: it issues access tokens to the apps it knows and refuses calls
// without a valid one (401), checks and records robot sends, resolves download
// codes to temporary URLs it serves itself, creates and records AI cards
// and their updates (openapi_card.go), and answers scripted failures
// (QPS limit, quota, bad parameter, 401) when told to. The embedded Recorder
// holds every request, with its arrival time.
type OpenAPI struct {
	*Recorder

	mu        sync.Mutex
	apps      map[string]OpenAPIApp // by AppKey
	tokens    map[string]issuedToken
	issued    int
	tokenLife time.Duration
	failures  map[string][]Failure // by path, "" for any; consumed in order
	media     map[string]Media     // by download code
	files     map[string]string    // media URL id → download code
	sent      []Sent
	card      *cardState
}

type issuedToken struct {
	app     OpenAPIApp
	expires time.Time
}

// NewOpenAPI starts a fake OpenAPI knowing apps. Like httptest.NewServer, it
// panics when it cannot listen.
func NewOpenAPI(apps ...OpenAPIApp) *OpenAPI {
	f, err := ListenOpenAPI("127.0.0.1:0", apps...)
	if err != nil {
		panic("dingtalktest: cannot listen for a fake OpenAPI: " + err.Error())
	}
	return f
}

// ListenOpenAPI is NewOpenAPI on addr, e.g. "127.0.0.1:9999" (port 0 picks
// a free one).
func ListenOpenAPI(addr string, apps ...OpenAPIApp) (*OpenAPI, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &OpenAPI{
		apps:      map[string]OpenAPIApp{},
		tokens:    map[string]issuedToken{},
		tokenLife: 2 * time.Hour,
		failures:  map[string][]Failure{},
		media:     map[string]Media{},
		files:     map[string]string{},
		card:      newCardState(),
	}
	for _, app := range apps {
		f.AddApp(app)
	}
	f.Recorder = startRecorder(&httptest.Server{Listener: ln, Config: &http.Server{}}, f.answer)
	return f, nil
}

// AddApp makes the fake know app.
func (f *OpenAPI) AddApp(app OpenAPIApp) {
	if app.RobotCode == "" {
		app.RobotCode = app.AppKey
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.apps[app.AppKey] = app
}

// SetTokenLife sets the expireIn of the tokens issued from now on (default 2h).
func (f *OpenAPI) SetTokenLife(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenLife = d
}

// RevokeTokens makes every token issued so far invalid: calls with them get 401.
func (f *OpenAPI) RevokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

// Fail makes the next times calls to path (any path but the token's when
// empty) answer failure instead of the real answer.
func (f *OpenAPI) Fail(path string, failure Failure, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range times {
		f.failures[path] = append(f.failures[path], failure)
	}
}

// AddMedia makes downloadCode resolve to a URL serving m.
func (f *OpenAPI) AddMedia(downloadCode string, m Media) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.media[downloadCode] = m
}

// Sent returns the robot messages accepted so far, in order.
func (f *OpenAPI) Sent() []Sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Sent(nil), f.sent...)
}

// Calls returns the requests received for path, in order.
func (f *OpenAPI) Calls(path string) []Received {
	var calls []Received
	for _, r := range f.Requests() {
		if strings.SplitN(r.Path, "?", 2)[0] == path {
			calls = append(calls, r)
		}
	}
	return calls
}

// TokenFetches returns how many access tokens were asked for.
func (f *OpenAPI) TokenFetches() int { return len(f.Calls(OpenAPITokenPath)) }

// MaxPerSecond returns the most requests for path (every API call but the
// token's when empty) that arrived within one calendar second, the way DingTalk counts
// its QPS limit.
func (f *OpenAPI) MaxPerSecond(path string) int {
	perSecond := map[int64]int{}
	best := 0
	for _, r := range f.Requests() {
		p := strings.SplitN(r.Path, "?", 2)[0]
		if path == "" && (p == OpenAPITokenPath || strings.HasPrefix(p, OpenAPIMediaPath)) || path != "" && p != path {
			continue
		}
		s := r.At.Unix()
		perSecond[s]++
		best = max(best, perSecond[s])
	}
	return best
}

// answer serves every request after the Recorder recorded it.
func (f *OpenAPI) answer(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, OpenAPIMediaPath) && r.Method == http.MethodGet {
		f.serveMedia(w, r)
		return
	}
	if r.Method != http.MethodPost && !(r.Method == http.MethodPut && isCardPath(r.URL.Path)) {
		writeOpenAPIError(w, Failure{http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed"})
		return
	}
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == OpenAPITokenPath {
		f.issueToken(w, body)
		return
	}
	if failure, ok := f.scripted(r.URL.Path); ok {
		writeOpenAPIError(w, failure)
		return
	}
	app, ok := f.authorized(r.Header.Get("x-acs-dingtalk-access-token"))
	if !ok {
		writeOpenAPIError(w, FailUnauthorized)
		return
	}
	switch r.URL.Path {
	case OpenAPIGroupSendPath, OpenAPIBatchSendPath:
		f.acceptSend(w, r.URL.Path, app, body)
	case OpenAPIDownloadPath:
		f.resolveDownload(w, app, body)
	case OpenAPICardCreatePath, OpenAPICardStreamingPath, OpenAPICardInstancesPath:
		f.answerCard(w, r, app, body)
	default:
		writeOpenAPIError(w, Failure{http.StatusNotFound, "NotFound", "no such API in the fake"})
	}
}

// scripted pops the next scripted failure for path, if any.
func (f *OpenAPI) scripted(path string) (Failure, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, key := range []string{path, ""} {
		if queue := f.failures[key]; len(queue) > 0 {
			f.failures[key] = queue[1:]
			return queue[0], true
		}
	}
	return Failure{}, false
}

func (f *OpenAPI) issueToken(w http.ResponseWriter, body []byte) {
	var req struct{ AppKey, AppSecret string }
	if json.Unmarshal(body, &req) != nil {
		writeOpenAPIError(w, FailBadParameter)
		return
	}
	f.mu.Lock()
	app, ok := f.apps[req.AppKey]
	if !ok || app.AppSecret != req.AppSecret {
		f.mu.Unlock()
		writeOpenAPIError(w, Failure{http.StatusBadRequest, "invalidClientIdOrSecret", "invalid appKey or appSecret"})
		return
	}
	f.issued++
	token := fmt.Sprintf("fake-token-%d-%s", f.issued, NewSession())
	life := f.tokenLife
	f.tokens[token] = issuedToken{app: app, expires: time.Now().Add(life)}
	f.mu.Unlock()
	writeOpenAPIJSON(w, map[string]any{"accessToken": token, "expireIn": int64(life / time.Second)})
}

func (f *OpenAPI) authorized(token string) (OpenAPIApp, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[token]
	if !ok || time.Now().After(t.expires) {
		return OpenAPIApp{}, false
	}
	return t.app, true
}

func (f *OpenAPI) acceptSend(w http.ResponseWriter, path string, app OpenAPIApp, body []byte) {
	var req struct {
		RobotCode          string   `json:"robotCode"`
		OpenConversationID string   `json:"openConversationId"`
		UserIDs            []string `json:"userIds"`
		MsgKey             string   `json:"msgKey"`
		MsgParam           string   `json:"msgParam"`
	}
	var param map[string]string
	bad := func(msg string) { writeOpenAPIError(w, Failure{http.StatusBadRequest, "param.invalid", msg}) }
	switch {
	case json.Unmarshal(body, &req) != nil:
		bad("the body is not the expected JSON")
	case req.RobotCode != app.RobotCode:
		bad("robotCode does not belong to the token's app")
	case !strings.HasPrefix(req.MsgKey, "sample"):
		bad("unknown msgKey")
	case json.Unmarshal([]byte(req.MsgParam), &param) != nil:
		bad("msgParam is not a JSON object of strings")
	case path == OpenAPIGroupSendPath && req.OpenConversationID == "":
		bad("openConversationId is required")
	case path == OpenAPIGroupSendPath && len(req.MsgParam) > maxGroupMsgParam:
		bad("msgParam is too long")
	case path == OpenAPIBatchSendPath && (len(req.UserIDs) == 0 || len(req.UserIDs) > 20):
		bad("userIds needs 1 to 20 ids")
	default:
		f.mu.Lock()
		f.sent = append(f.sent, Sent{
			Path: path, RobotCode: req.RobotCode, ConversationID: req.OpenConversationID, UserIDs: req.UserIDs,
			MsgKey: req.MsgKey, Param: param, At: time.Now(),
		})
		key := fmt.Sprintf("fake-process-%d", len(f.sent))
		f.mu.Unlock()
		writeOpenAPIJSON(w, map[string]any{"processQueryKey": key})
	}
}

func (f *OpenAPI) resolveDownload(w http.ResponseWriter, app OpenAPIApp, body []byte) {
	var req struct{ DownloadCode, RobotCode string }
	if json.Unmarshal(body, &req) != nil || req.RobotCode != app.RobotCode {
		writeOpenAPIError(w, FailBadParameter)
		return
	}
	f.mu.Lock()
	_, ok := f.media[req.DownloadCode]
	id := NewSession()
	if ok {
		f.files[id] = req.DownloadCode
	}
	f.mu.Unlock()
	if !ok {
		writeOpenAPIError(w, Failure{http.StatusBadRequest, "param.downloadCode.invalid", "unknown downloadCode"})
		return
	}
	writeOpenAPIJSON(w, map[string]any{"downloadUrl": f.URL + OpenAPIMediaPath + id})
}

func (f *OpenAPI) serveMedia(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	m, ok := f.media[f.files[strings.TrimPrefix(r.URL.Path, OpenAPIMediaPath)]]
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", m.ContentType)
	_, _ = w.Write(m.Body)
}

func writeOpenAPIJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeOpenAPIError(w http.ResponseWriter, failure Failure) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(failure.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"code": failure.Code, "message": failure.Message, "requestid": NewSession(),
	})
}
