package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Nothing secret is ever logged: after the whole suite, TestMain scans the
// log of every gateway that ran for every secret a config held (bot
// secrets, store passwords, a URL's password), every sign
// that was sent or that a gateway could have expected (each timestamp sent,
// signed with each secret), and every sessionWebhook session token sent.
//
// Which lines must be clean of what:
//
//	kind    | the module's lines | Caddy's lines, INFO and up          | Caddy's DEBUG lines
//	secret  | all                | all                                 | all but Caddy's config dump
//	sign    | all                | all but ExpectSignInLogs gateways   | those of gateways with FilterSign
//	token   | all                | all                                 | all
//
// At DEBUG, Caddy prints the loaded config (inline secrets included) and,
// without the sign filter the README ships, the headers of the requests it
// proxies or fails: that is Caddy's, out of the module's hands, and why the
// README ships the filter and recommends {env.*} secrets.

// leakCheck holds what the suite sent and configured, and its gateways' logs.
var leakCheck = &leakRegistry{
	secrets:    map[string]bool{},
	timestamps: map[string]bool{},
	signs:      map[string]bool{},
	tokens:     map[string]bool{},
}

type leakRegistry struct {
	mu         sync.Mutex
	secrets    map[string]bool
	timestamps map[string]bool
	signs      map[string]bool
	tokens     map[string]bool
	logs       []*gatewayLog
}

// gatewayLog is one gateway's log file and how its sites logged.
type gatewayLog struct {
	test, file string
	filtered   bool // every config the gateway loaded had FilterSign
	expectSign bool // a config the gateway loaded had ExpectSignInLogs
}

// minLeakLength is the shortest value the check looks for: a shorter one
// would match unrelated text. Tests use realistic secrets and tokens
// (dingtalktest.NewSession) so that every one of them is checked.
const minLeakLength = 8

func (lr *leakRegistry) add(set map[string]bool, value string) {
	if len(value) < minLeakLength {
		return
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	set[value] = true
}

// addLog registers a gateway's log file for the check.
func (lr *leakRegistry) addLog(test, file string) *gatewayLog {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	l := &gatewayLog{test: test, file: file, filtered: true}
	lr.logs = append(lr.logs, l)
	return l
}

// loaded records a config the gateway loaded: how it logs, and the secrets
// its JSON holds, with placeholders expanded as the modules expand them.
func (lr *leakRegistry) loaded(l *gatewayLog, s site, config []byte) {
	lr.mu.Lock()
	l.filtered = l.filtered && s.FilterSign
	l.expectSign = l.expectSign || s.ExpectSignInLogs
	lr.mu.Unlock()
	var tree any
	if err := json.Unmarshal(config, &tree); err != nil {
		panic(err) // Caddy's adapter wrote it
	}
	repl := caddy.NewReplacer()
	var walk func(any)
	walk = func(node any) {
		switch n := node.(type) {
		case map[string]any:
			for key, value := range n {
				text, _ := value.(string)
				switch key {
				case "secret", "password", "token", "aes_key":
					lr.add(lr.secrets, repl.ReplaceAll(text, ""))
				case "url":
					if u, err := url.Parse(repl.ReplaceAll(text, "")); err == nil {
						password, _ := u.User.Password()
						lr.add(lr.secrets, password)
					}
				}
				walk(value)
			}
		case []any:
			for _, value := range n {
				walk(value)
			}
		}
	}
	walk(tree)
}

// recordingTransport is http.DefaultTransport during the suite: it records
// the signs, timestamps and session tokens of everything the tests send
// (g.post, g.do, the CLI) and of the relay's posts to fake webhooks.
type recordingTransport struct{ next http.RoundTripper }

func (rt recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for name, values := range req.Header {
		for _, value := range values {
			switch {
			case strings.EqualFold(name, dingtalk.HeaderSign):
				leakCheck.add(leakCheck.signs, value)
			case strings.EqualFold(name, dingtalk.HeaderTimestamp):
				leakCheck.add(leakCheck.timestamps, value)
			}
		}
	}
	leakCheck.add(leakCheck.tokens, req.URL.Query().Get("session"))
	if req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			var m struct{ SessionWebhook string }
			data, _ := io.ReadAll(body)
			if json.Unmarshal(data, &m) == nil {
				if u, err := url.Parse(m.SessionWebhook); err == nil {
					leakCheck.add(leakCheck.tokens, u.Query().Get("session"))
				}
			}
		}
	}
	return rt.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// real transport: the harness relies on it after a reload.
func (rt recordingTransport) CloseIdleConnections() {
	if c, ok := rt.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// signShape finds base64 HMAC-SHA256 values: a sign, as sent or logged.
var signShape = regexp.MustCompile(`[A-Za-z0-9+/]{43}=`)

// unescapeSign undoes the query escaping of a sign's characters.
var unescapeSign = strings.NewReplacer("%2B", "+", "%2b", "+", "%2F", "/", "%2f", "/", "%3D", "=", "%3d", "=")

// find returns one message per log line that leaks, naming the test, the
// file and the kind of value, never the value.
func (lr *leakRegistry) find() []string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	signs := maps.Clone(lr.signs)
	for ts := range lr.timestamps {
		for secret := range lr.secrets {
			signs[dingtalk.Sign(secret, ts)] = true // what a gateway computes for each bot
		}
	}
	var leaks []string
	for _, l := range lr.logs {
		data, err := os.ReadFile(l.file)
		if err != nil && !os.IsNotExist(err) {
			leaks = append(leaks, fmt.Sprintf("%s: reading its log: %v", l.test, err))
			continue
		}
		scanner := bufio.NewScanner(bytes.NewReader(data))
		scanner.Buffer(nil, 1<<24)
		for n := 1; scanner.Scan(); n++ {
			line := scanner.Text()
			var kinds []string
			if containsAny(line, lr.secrets) {
				kinds = append(kinds, "secret")
			}
			for _, candidate := range signShape.FindAllString(unescapeSign.Replace(line), -1) {
				if signs[candidate] {
					kinds = append(kinds, "sign")
					break
				}
			}
			if containsAny(line, lr.tokens) {
				kinds = append(kinds, "session token")
			}
			for _, kind := range kinds {
				if who, ok := l.mustBeClean(kind, line); ok {
					leaks = append(leaks, fmt.Sprintf("%s: %s line %d (%s) contains a %s", l.test, l.file, n, who, kind))
				}
			}
		}
	}
	return leaks
}

// mustBeClean applies the table at the top of this file to a line holding
// a value of kind. It also says whose line it is.
func (l *gatewayLog) mustBeClean(kind, line string) (who string, clean bool) {
	var entry struct{ Level, Logger, Msg string }
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		return "not a JSON log line", true
	}
	who = fmt.Sprintf("%s logger %q", entry.Level, entry.Logger)
	if strings.Contains(entry.Logger, "dingtalk") || kind == "session token" {
		return who, true
	}
	debug := entry.Level == "debug"
	switch kind {
	case "secret":
		return who, !(debug && entry.Logger == "http.auto_https" && entry.Msg == "adjusted config")
	case "sign":
		if debug {
			return who, l.filtered
		}
		return who, !l.expectSign
	}
	return who, true
}

func containsAny(line string, values map[string]bool) bool {
	for value := range values {
		for _, form := range escapedForms(value) {
			if strings.Contains(line, form) {
				return true
			}
		}
	}
	return false
}

// escapedForms are the ways value can appear in a JSON log line.
func escapedForms(value string) []string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(value)
	quoted := strings.TrimSpace(buf.String())
	forms := []string{value, quoted[1 : len(quoted)-1], url.QueryEscape(value), url.PathEscape(value)}
	slices.Sort(forms)
	return slices.Compact(forms)
}

// checkSuiteLogs runs the check after the suite and reports what leaked.
func checkSuiteLogs(logDir string) bool {
	leaks := leakCheck.find()
	if len(leaks) == 0 {
		return true
	}
	fmt.Fprintf(os.Stderr, "FAIL: secrets in the logs of the integration suite (logs kept in %s):\n", logDir)
	for _, leak := range leaks {
		fmt.Fprintln(os.Stderr, "\t"+leak)
	}
	return false
}

// The check finds each kind of value where the table says it must not be,
// and lets Caddy's own DEBUG lines be.
func TestLeakCheckFindsEveryKind(t *testing.T) {
	const secret, token, ts = "a secret of the check", "0123456789abcdef", "1700000000000"
	sign := dingtalk.Sign(secret, ts)
	file := filepath.Join(t.TempDir(), "caddy.log")
	lines := []string{
		`{"level":"info","logger":"http.handlers.dingtalk","msg":"m","error":"` + secret + `"}`,
		`{"level":"debug","logger":"http.handlers.dingtalk","msg":"m","url":"/?session=` + token + `"}`,
		`{"level":"error","logger":"http.log.error","msg":"m","request":{"headers":{"Sign":["` + sign + `"]}}}`,
		`{"level":"warn","logger":"http.handlers.dingtalk","msg":"m","sign":"` + url.QueryEscape(sign) + `"}`,
		`{"level":"debug","logger":"http.auto_https","msg":"adjusted config","http":{"secret":"` + secret + `"}}`,
		`{"level":"debug","logger":"http.handlers.reverse_proxy","msg":"m","headers":{"Sign":["` + sign + `"]}}`,
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lr := &leakRegistry{
		secrets:    map[string]bool{secret: true},
		timestamps: map[string]bool{ts: true}, // the sign is found as expected, not as sent
		signs:      map[string]bool{},
		tokens:     map[string]bool{token: true},
		logs:       []*gatewayLog{{test: "TestX", file: file}},
	}
	got := lr.find()
	want := []string{
		"TestX: " + file + ` line 1 (info logger "http.handlers.dingtalk") contains a secret`,
		"TestX: " + file + ` line 2 (debug logger "http.handlers.dingtalk") contains a session token`,
		"TestX: " + file + ` line 3 (error logger "http.log.error") contains a sign`,
		"TestX: " + file + ` line 4 (warn logger "http.handlers.dingtalk") contains a sign`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, leak := range got {
		if strings.Contains(leak, secret) || strings.Contains(leak, token) || strings.Contains(leak, sign) {
			t.Errorf("the report shows the value: %s", leak)
		}
	}
}
