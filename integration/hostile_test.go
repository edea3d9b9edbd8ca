package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// hostileMaxBody is the max_body of the hostile-input gateway.
const hostileMaxBody = 4096

// hostileSite verifies /robot with a small max_body, cuts off bodies that
// take longer than a second, answers rejections with their reason, and
// proxies genuine callbacks to upstream.
func hostileSite(upstream *dingtalktest.Recorder) site {
	return site{
		FilterSign: true,
		Global: `servers {
		timeouts {
			read_body 1s
		}
	}`,
		Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			max_body %d
		}
		reverse_proxy %s
	}
	handle_errors {
		respond "{http.dingtalk.reject_reason}"
	}`, testSecret, hostileMaxBody, hostPort(upstream.URL)),
	}
}

// hostile is one hostile request. send gets the gateway and the body to
// send, and returns what the client saw.
type hostile struct {
	name   string
	body   []byte // nil: a fresh genuine callback, with its own msgId
	send   func(g *gateway, body []byte) response
	status int
	reason string // the answer's body, the reject reason; "" skips the check (net/http's own answers, HEAD, genuine requests)
	// forwarded: the request is genuine after all and must reach the
	// upstream once, with the body as sent; otherwise the upstream must see nothing.
	forwarded bool
}

// The gateway under hostile input: every request gets the expected status
// and reason, and only the genuine ones reach the upstream. SECURITY.md
// shows this table.
func TestHostileInputs(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	upstream.Handler = echoMsgID
	g := startGateway(t, hostileSite(upstream))

	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			before := upstream.Count()
			body := c.body
			if body == nil {
				body = dingtalktest.Callback{Text: c.name}.Body()
			}
			resp := c.send(g, body)
			if resp.Status != c.status {
				t.Errorf("status %d (%q), want %d", resp.Status, resp.Body, c.status)
			}
			if c.reason != "" && resp.Body != c.reason {
				t.Errorf("answer %q, want %q", resp.Body, c.reason)
			}
			if c.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", resp.Header.Get("Allow"))
			}
			got := upstream.Requests()[before:]
			if !c.forwarded {
				if len(got) != 0 {
					t.Fatalf("the upstream saw %d requests: %v", len(got), got[0].Header)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("the upstream saw %d requests, want 1", len(got))
			}
			mustEqualBytes(t, "forwarded body", got[0].Body, body)
			if bot := got[0].Header.Values("X-Dingtalk-Bot"); len(bot) != 1 || bot[0] != "default" {
				t.Errorf("X-Dingtalk-Bot = %q, want [default]", bot)
			}
			for name := range got[0].Header {
				if name != "X-Dingtalk-Bot" && strings.Contains(strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name)), "dingtalk") {
					t.Errorf("a client's %s header reached the upstream", name)
				}
			}
			if n, _ := strconv.Atoi(got[0].Header.Get("Content-Length")); n != len(body) {
				t.Errorf("forwarded with Content-Length %q, want %d", got[0].Header.Get("Content-Length"), len(body))
			}
		})
	}
	if !t.Failed() {
		// The same gateway passes a plain genuine callback: the cases failed for their own reasons.
		if resp := g.post("/robot", testSecret, callback("genuine")); resp.Status != http.StatusOK || !strings.HasPrefix(resp.Body, "re:") {
			t.Fatalf("a genuine callback got %d %q", resp.Status, resp.Body)
		}
	}
}

func hostileCases() []hostile {
	now := time.Now()
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	sign := dingtalk.Sign(testSecret, ts)
	signedTS := func(ts string) func(*http.Request) { return setHeaders(ts, dingtalk.Sign(testSecret, ts)) }
	big := func(n int) []byte { // a genuine callback padded to n bytes
		cb := dingtalktest.Callback{Text: "big"}.Body()
		pad := n - len(cb) - len(`,"pad":""`)
		return append(cb[:len(cb)-1:len(cb)-1], []byte(`,"pad":"`+strings.Repeat("x", pad)+`"}`)...)
	}
	gzipped := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	nested := func(depth int) []byte {
		return []byte(`{"msgtype":"text","msgId":"` + dingtalktest.NewMsgID() + `","x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
	}
	// raw builds a request line and headers by hand, with the genuine
	// timestamp and sign unless the extra lines replace them.
	raw := func(method string, headerLines ...string) func(*gateway, []byte) response {
		return func(g *gateway, body []byte) response {
			head := method + " /robot HTTP/1.1\r\nHost: " + hostPort(g.URL) + "\r\n" + strings.Join(headerLines, "\r\n")
			if !strings.Contains(head, "Content-Length") && !strings.Contains(head, "Transfer-Encoding") {
				head += "\r\nContent-Length: " + strconv.Itoa(len(body))
			}
			return sendRaw(g, head+"\r\n\r\n"+string(body))
		}
	}
	genuineHeaders := []string{"timestamp: " + ts, "sign: " + sign}
	withLines := func(lines ...string) []string { return append(append([]string{}, genuineHeaders...), lines...) }

	return []hostile{
		// Headers.
		{"no timestamp or sign", nil, post(setHeaders("", "")), 401, "missing_headers", false},
		{"no sign", nil, post(setHeaders(ts, "")), 401, "missing_headers", false},
		{"timestamp twice", nil, post(func(r *http.Request) { r.Header.Add("timestamp", ts) }), 401, "missing_headers", false},
		{"sign twice", nil, post(func(r *http.Request) { r.Header.Add("sign", sign) }), 401, "missing_headers", false},
		{"timestamp and TIMESTAMP", nil, raw("POST", "timestamp: "+ts, "TIMESTAMP: "+ts, "sign: "+sign), 401, "missing_headers", false},
		{"empty sign", nil, raw("POST", "timestamp: "+ts, "sign: "), 401, "missing_headers", false},
		{"empty timestamp", nil, raw("POST", "timestamp: ", "sign: "+sign), 401, "missing_headers", false},
		{"spaces around the values", nil, raw("POST", "timestamp:   "+ts+"  ", "sign: \t"+sign+" "), 200, "", true},
		{"space inside the sign", nil, post(setHeaders(ts, sign[:20]+" "+sign[20:])), 401, "bad_sign", false},
		{"space inside the timestamp", nil, post(setHeaders(ts[:5]+" "+ts[5:], sign)), 401, "bad_timestamp", false},
		{"sign folded onto a second line", nil, raw("POST", "timestamp: "+ts, "sign: "+sign[:20], " "+sign[20:]), 401, "bad_sign", false},
		{"control character in a value", nil, raw("POST", "timestamp: "+ts+"\x01", "sign: "+sign), 400, "", false},
		{"NUL in a value", nil, raw("POST", "timestamp: "+ts, "sign: "+sign+"\x00"), 400, "", false},
		{"space before the colon", nil, raw("POST", "timestamp : "+ts, "sign: "+sign), 400, "", false},
		{"a 2 MiB header", nil, raw("POST", withLines("X-Pad: "+strings.Repeat("a", 2<<20))...), 431, "", false},
		// The sign.
		{"URL-encoded sign", nil, post(setHeaders(ts, url.QueryEscape(sign))), 401, "bad_sign", false},
		{"URL-safe base64 sign", nil, post(setHeaders(ts, strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(sign), "="))), 401, "bad_sign", false},
		{"sign of another secret", nil, post(setHeaders(ts, dingtalk.Sign("another secret", ts))), 401, "bad_sign", false},
		{"sign of another timestamp", nil, post(setHeaders(ts, dingtalk.Sign(testSecret, strconv.FormatInt(now.UnixMilli()-1, 10)))), 401, "bad_sign", false},
		{"sign over the secret alone", nil, post(setHeaders(ts, dingtalk.Sign(testSecret, ""))), 401, "bad_sign", false},
		// The timestamp, each signed correctly.
		{"seconds, not milliseconds", nil, post(signedTS(strconv.FormatInt(now.Unix(), 10))), 401, "expired", false},
		{"negative", nil, post(signedTS("-" + ts)), 401, "bad_timestamp", false},
		{"plus sign", nil, post(signedTS("+" + ts)), 401, "bad_timestamp", false},
		{"overflowing int64", nil, post(signedTS("99999999999999999999")), 401, "bad_timestamp", false},
		{"15 digits, far ahead", nil, post(signedTS("999999999999999")), 401, "future", false},
		{"leading zeros beyond 15 digits", nil, post(signedTS("000" + ts)), 401, "bad_timestamp", false},
		{"fractional", nil, post(signedTS(ts + ".5")), 401, "bad_timestamp", false},
		{"full-width digits", nil, post(signedTS("１７" + ts[2:])), 401, "bad_timestamp", false},
		{"a byte that is not UTF-8", nil, raw("POST", "timestamp: "+ts+"\xff", "sign: "+dingtalk.Sign(testSecret, ts+"\xff")), 401, "bad_timestamp", false},
		{"two hours old", nil, post(signedTS(strconv.FormatInt(now.Add(-2*time.Hour).UnixMilli(), 10))), 401, "expired", false},
		{"ten minutes ahead", nil, post(signedTS(strconv.FormatInt(now.Add(10*time.Minute).UnixMilli(), 10))), 401, "future", false},
		// The body, under a genuine sign.
		{"empty body", []byte{}, post(), 400, "bad_body", false},
		{"truncated JSON", []byte(`{"msgtype":"text","msgId":"x"`), post(), 400, "bad_body", false},
		{"not JSON", []byte("hello robot"), post(), 400, "bad_body", false},
		{"a JSON array", []byte(`[{"msgtype":"text","msgId":"x"}]`), post(), 400, "bad_body", false},
		{"msgId twice", []byte(`{"msgtype":"text","msgId":"a","msgId":"b"}`), post(), 400, "bad_body", false},
		{"robotCode twice in other case", []byte(`{"msgtype":"text","msgId":"a","robotCode":"other","ROBOTCODE":"dingrobot1"}`), post(), 400, "bad_body", false},
		{"msgId a number", []byte(`{"msgtype":"text","msgId":12345}`), post(), 400, "bad_body", false},
		{"isAdmin a string", []byte(`{"msgtype":"text","msgId":"a","isAdmin":"true"}`), post(), 400, "bad_body", false},
		{"nested 65 levels", nested(65), post(), 400, "bad_body", false},
		{"nested 2000 levels", nested(2000), post(), 400, "bad_body", false},
		{"exactly max_body", big(hostileMaxBody), post(), 200, "", true},
		{"max_body+1 with Content-Length", big(hostileMaxBody + 1), post(), 413, "too_large", false},
		{"max_body+1 chunked", big(hostileMaxBody + 1), post(chunkedSelf), 413, "too_large", false},
		{"chunked", nil, post(chunkedSelf), 200, "", true},
		{"Content-Length and chunked both", nil, rawChunkedWithLength(genuineHeaders), 200, "", true},
		{"malformed chunk", nil, raw("POST", withLines("Transfer-Encoding: chunked")...), 400, "bad_body", false},
		{"gzip-encoded", nil, post(func(r *http.Request) { gzipBody(r, gzipped) }), 400, "bad_body", false},
		{"gzip without saying so", gzipped(callback("zipped")), post(), 400, "bad_body", false},
		{"Transfer-Encoding gzip, chunked", nil, raw("POST", withLines("Transfer-Encoding: gzip, chunked")...), 501, "", false},
		{"two different Content-Lengths", nil, raw("POST", withLines("Content-Length: 5", "Content-Length: 6")...), 400, "", false},
		{"Content-Length beyond the body", nil, raw("POST", withLines("Content-Length: 100000")...), 413, "too_large", false},
		{"a slow body (slowloris)", nil, slowBody(genuineHeaders), 400, "bad_body", false},
		{"a slow body with a forged sign", nil, slowBody([]string{"timestamp: " + ts, "sign: " + dingtalk.Sign("forged", ts)}), 401, "bad_sign", false},
		{"Expect: 100-continue with a forged sign", nil, firstAnswer(expectHeaders([]string{"timestamp: " + ts, "sign: " + dingtalk.Sign("forged", ts)})), 401, "bad_sign", false},
		{"Expect: 100-continue, genuine", nil, expectContinue(genuineHeaders), 200, "", true},
		// Methods.
		{"GET", nil, post(func(r *http.Request) { r.Method = http.MethodGet }), 405, "method", false},
		{"PUT", nil, post(func(r *http.Request) { r.Method = http.MethodPut }), 405, "method", false},
		{"HEAD", nil, post(func(r *http.Request) { r.Method = http.MethodHead }), 405, "", false},
		{"OPTIONS", nil, post(func(r *http.Request) { r.Method = http.MethodOptions }), 405, "method", false},
		{"lower-case post", nil, raw("post", genuineHeaders...), 405, "method", false},
		// Spoofing the headers the gateway sets.
		{"X-Dingtalk-* from the client", nil, post(func(r *http.Request) {
			r.Header.Set("X-Dingtalk-Bot", "admin")
			r.Header.Add("X-Dingtalk-Bot", "sales")
			r.Header.Set("X-DingTalk-Admin", "true")
		}), 200, "", true},
		{"x-dingtalk-bot in lower case", nil, raw("POST", withLines("x-dingtalk-bot: admin", "X-DINGTALK-BOT: sales")...), 200, "", true},
		{"X_Dingtalk_Bot and X.Dingtalk.Bot", nil, raw("POST", withLines("X_Dingtalk_Bot: admin", "X.Dingtalk.Bot: admin")...), 200, "", true},
	}
}

// post sends the body signed now, after the edits.
func post(edits ...func(*http.Request)) func(*gateway, []byte) response {
	return func(g *gateway, body []byte) response { return g.post("/robot", testSecret, body, edits...) }
}

// setHeaders replaces the timestamp and sign; an empty value leaves the header out.
func setHeaders(ts, sign string) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Del("timestamp")
		r.Header.Del("sign")
		if ts != "" {
			r.Header.Set("timestamp", ts)
		}
		if sign != "" {
			r.Header.Set("sign", sign)
		}
	}
}

// chunkedSelf sends the body without a length: chunked.
func chunkedSelf(r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = -1
}

// gzipBody sends the body compressed, saying so in Content-Encoding.
func gzipBody(r *http.Request, gzipped func([]byte) []byte) {
	body, _ := io.ReadAll(r.Body)
	zipped := gzipped(body)
	r.Body = io.NopCloser(bytes.NewReader(zipped))
	r.ContentLength = int64(len(zipped))
	r.Header.Set("Content-Encoding", "gzip")
}

// rawChunkedWithLength sends both a Content-Length and a chunked body, the
// classic request-smuggling ambiguity: net/http reads the chunks (as RFC
// 9112 says) and the gateway forwards them with a length of its own.
func rawChunkedWithLength(headers []string) func(*gateway, []byte) response {
	return func(g *gateway, body []byte) response {
		return sendRaw(g, "POST /robot HTTP/1.1\r\nHost: "+hostPort(g.URL)+"\r\n"+strings.Join(headers, "\r\n")+
			"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"+fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body))
	}
}

// slowBody sends the headers, then the body a byte at a time, slower than
// the server's read_body timeout allows.
func slowBody(headers []string) func(*gateway, []byte) response {
	return func(g *gateway, body []byte) response {
		conn := dial(g)
		defer conn.Close()
		head := "POST /robot HTTP/1.1\r\nHost: " + hostPort(g.URL) + "\r\n" + strings.Join(headers, "\r\n") +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head); err != nil {
			g.t.Fatal(err)
		}
		go func() { // trickles until the server gives up and the connection closes
			for _, b := range body {
				time.Sleep(200 * time.Millisecond)
				if _, err := conn.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
		br := bufio.NewReader(conn)
		resp := readResponse(g, br)
		// Closed: an EOF, or a reset when the trickle's next byte met the closed socket.
		var netErr net.Error
		if _, err := br.ReadByte(); err == nil || errors.As(err, &netErr) && netErr.Timeout() {
			g.t.Errorf("the connection stays open after the answer (%v)", err)
		}
		return resp
	}
}

// expectHeaders are the request head of a body sent only when the server
// asks for it with 100 Continue.
func expectHeaders(headers []string) func(g *gateway, body []byte) string {
	return func(g *gateway, body []byte) string {
		return "POST /robot HTTP/1.1\r\nHost: " + hostPort(g.URL) + "\r\n" + strings.Join(headers, "\r\n") +
			"\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	}
}

// firstAnswer sends only the request head and returns the first answer: a
// request that is refused without its body gets no 100 Continue.
func firstAnswer(head func(*gateway, []byte) string) func(*gateway, []byte) response {
	return func(g *gateway, body []byte) response {
		conn := dial(g)
		defer conn.Close()
		if _, err := io.WriteString(conn, head(g, body)); err != nil {
			g.t.Fatal(err)
		}
		return readResponse(g, bufio.NewReader(conn))
	}
}

// expectContinue sends the body when the server asks for it with 100
// Continue, and returns the final answer.
func expectContinue(headers []string) func(*gateway, []byte) response {
	return func(g *gateway, body []byte) response {
		conn := dial(g)
		defer conn.Close()
		if _, err := io.WriteString(conn, expectHeaders(headers)(g, body)); err != nil {
			g.t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp := readResponse(g, br)
		if resp.Status != http.StatusContinue {
			return resp
		}
		if _, err := conn.Write(body); err != nil {
			g.t.Fatal(err)
		}
		for resp.Status == http.StatusContinue { // the upstream's 100 Continue is relayed too
			resp = readResponse(g, br)
		}
		return resp
	}
}

// sendRaw writes request bytes that Go's client would refuse to send on a
// new connection, and reads the answer.
func sendRaw(g *gateway, request string) response {
	conn := dial(g)
	defer conn.Close()
	go func() { _, _ = io.WriteString(conn, request) }() // the server may answer before reading it all
	return readResponse(g, bufio.NewReader(conn))
}

func dial(g *gateway) net.Conn {
	conn, err := net.Dial("tcp", hostPort(g.URL))
	if err != nil {
		g.t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	return conn
}

func readResponse(g *gateway, br *bufio.Reader) response {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		g.t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("reading the answer: %v", err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// With Caddy's default timeouts (a body may trickle for as long as each
// byte comes within a minute), a request with a forged sign is answered at
// once, without waiting for its body: net/http would otherwise read the
// rest of the body before answering, to keep the connection, so that a
// forger trickling a body held the answer back for as long as it kept
// sending, and one sending Expect: 100-continue got no answer for a minute.
func TestForgeryIsAnsweredWithoutReadingItsBody(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, observed(proxySite(upstream, "")))
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	forged := []string{"timestamp: " + ts, "sign: " + dingtalk.Sign("forged", ts)}
	body := callback("forged")

	if resp := firstAnswer(expectHeaders(forged))(g, body); resp.Status != http.StatusUnauthorized {
		t.Fatalf("with Expect: 100-continue the first answer is %d, want 401", resp.Status)
	}

	// A body trickling slower than the test's patience: only an answer that
	// does not wait for it arrives.
	conn := dial(g)
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /robot HTTP/1.1\r\nHost: "+hostPort(g.URL)+"\r\n"+strings.Join(forged, "\r\n")+
		"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+string(body[:10])); err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, b := range body[10:] {
			time.Sleep(time.Second)
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	if resp := readResponse(g, bufio.NewReader(conn)); resp.Status != http.StatusUnauthorized {
		t.Fatalf("a trickled forgery got %d, want 401", resp.Status)
	}
	if upstream.Count() != 0 {
		t.Fatal("the upstream was contacted")
	}
}
