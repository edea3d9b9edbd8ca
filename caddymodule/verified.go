package caddymodule

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Verified is a callback the dingtalk handler accepted: the bot whose secret
// signed it, the parsed message, and the body exactly as received.
type Verified struct {
	Bot     string
	Message *dingtalk.Message
	Body    string

	signer *bot // the bot named Bot
	// storeKey names the message in the store: what de-duplication claims,
	// and what the replay guard's token is a digest of.
	storeKey string
}

// accepted is what the handler allocates for a callback it accepts, in one
// piece: the verified message, the bot that signed it, and what hands the
// message on to the rest of the route. Benchmark: BenchmarkServeHTTPAccepted.
type accepted struct {
	Verified
	message   dingtalk.MessageBuffer // where Message lives
	reader    bodyReader             // reads Body to the next handler
	botHeader [1]string              // the X-Dingtalk-Bot header's values
	response  statusWriter           // the answer, as de-duplication watches it
	claim     claim                  // the msgId's, while the route runs (sync)
	pair      PairClaim              // the replay guard's, when a durable async job takes it
	keys      keyRoom                // where the store keys' bytes are

	timestamp, sign string // the headers that were verified, for a durable async job's record
	storeFailed     bool   // the store failed for this callback, which goes on (on_error open)
}

// keyRoom holds the bytes of a callback's keys in the store, so that they
// need no allocation of their own: the keys are strings that are parts of
// it, as the message's strings are parts of the body. Bytes once kept are
// never written again. Benchmark: BenchmarkServeHTTPAccepted.
type keyRoom struct {
	buf  [128]byte
	used int
}

// free returns the unused room, to append a key to.
func (k *keyRoom) free() []byte { return k.buf[k.used:k.used] }

// keep returns key, appended to free's slice, as a string. A key too long
// for the room was appended to a new array, which it keeps.
func (k *keyRoom) keep(key []byte) string {
	if len(key) <= len(k.buf)-k.used {
		k.used += len(key)
	}
	return unsafe.String(unsafe.SliceData(key), len(key))
}

// verifiedVar names the request variable under which the handler leaves
// the verified message for the rest of the route. Caddy gives every request
// a table of variables that all its handlers share; a variable costs no
// copy of the request, as a context value would.
const verifiedVar = "dingtalk.verified"

// verifiedValue is what verifiedVar holds. Only the handler makes one, so
// an unverified request can never look verified downstream: the vars
// directive sets strings. It shows as the bot's name in placeholders
// ({http.vars.dingtalk.verified}), not as the message.
type verifiedValue struct{ v *Verified }

func (x verifiedValue) String() string { return x.v.Bot }

// VerifiedFrom returns the message the dingtalk handler verified earlier in
// this request's route, if any.
func VerifiedFrom(ctx context.Context) (*Verified, bool) {
	x, ok := caddyhttp.GetVar(ctx, verifiedVar).(verifiedValue)
	return x.v, ok
}

// Headers the handler controls on the way to the next handler.
const (
	headerPrefix = "X-Dingtalk-"
	headerBot    = "X-Dingtalk-Bot"
)

// prepareForward hands the verified callback to the rest of the route: the
// body restored byte for byte, X-Dingtalk-* headers replaced by ours, the
// sign stripped if configured, and the message in a request variable and
// the placeholders.
func (h *Handler) prepareForward(r *http.Request, repl *caddy.Replacer, a *accepted) {
	v := &a.Verified
	restoreBody(r, v.Body, &a.reader)
	for name := range r.Header {
		// Header keys are canonical, so a prefix test on the canonical form
		// is exact. X-Dingtalk-Bot is replaced below.
		if strings.HasPrefix(name, headerPrefix) && name != headerBot {
			delete(r.Header, name)
		}
	}
	a.botHeader[0] = v.Bot
	r.Header[headerBot] = a.botHeader[:]
	if h.stripSign {
		r.Header.Del(dingtalk.HeaderTimestamp)
		r.Header.Del(dingtalk.HeaderSign)
	}
	addPlaceholders(repl, v)
	caddyhttp.SetVar(r.Context(), verifiedVar, verifiedValue{v})
}

// placeholderPrefix starts every placeholder this module serves.
const placeholderPrefix = "http.dingtalk."

// headerSafeSuffix marks the percent-encoded twin of a placeholder: the raw
// values keep newlines (a reply must show a multi-line message as sent), and
// a newline in a request header would make the proxy fail with 502.
const headerSafeSuffix = ".urlencoded"

// addPlaceholders serves {http.dingtalk.*} lazily from v: nothing is computed
// unless a placeholder is used.
func addPlaceholders(repl *caddy.Replacer, v *Verified) {
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, placeholderPrefix)
		if !ok {
			return nil, false
		}
		if raw, ok := strings.CutSuffix(name, headerSafeSuffix); ok {
			value, known := placeholderValue(v, raw)
			if !known {
				return nil, false
			}
			return encodeURIComponent(value), true
		}
		value, known := placeholderValue(v, name)
		if !known {
			return nil, false
		}
		return value, true
	})
}

// encodeURIComponent percent-encodes every byte but letters, digits and
// -_.~, which escapes a little more than JavaScript's encodeURIComponent
// (also !'()*) and decodes the same: the value is safe in a header, a path
// segment and a query value. (url.PathEscape would leave & = + : @ as they
// are, so a user's text could add parameters to a reply's URL.)
func encodeURIComponent(value string) string {
	return strings.ReplaceAll(url.QueryEscape(value), "+", "%20")
}

// placeholderValue returns the value of {http.dingtalk.<name>}.
func placeholderValue(v *Verified, name string) (string, bool) {
	m := v.Message
	switch name {
	case "bot":
		return v.Bot, true
	case "msg_id":
		return m.MsgID, true
	case "msgtype":
		return m.MsgType, true
	case "text":
		return m.TrimmedText(), true
	case "has_media":
		return strconv.FormatBool(m.HasMedia()), true
	case "sender_id":
		return m.SenderID, true
	case "sender_nick":
		return m.SenderNick, true
	case "sender_staff_id":
		return m.SenderStaffID, true
	case "sender_corp_id":
		return m.SenderCorpID, true
	case "conversation_id":
		return m.ConversationID, true
	case "conversation_type":
		return m.Conversation(), true
	case "conversation_title":
		return m.ConversationTitle, true
	case "robot_code":
		return m.RobotCode, true
	case "chatbot_user_id":
		return m.ChatbotUserID, true
	case "is_admin":
		return strconv.FormatBool(m.IsAdmin), true
	case "is_in_at_list":
		return strconv.FormatBool(m.IsInAtList), true
	case "session_webhook":
		return m.SessionWebhook, true
	case "create_at":
		return m.CreateAt.String(), true
	case "download_code": // the file of a picture, audio, video or file; a richText's first picture
		if codes := m.DownloadCodes(); len(codes) > 0 {
			return codes[0], true
		}
		return "", true
	case "download_codes": // every picture of a richText, comma-separated
		return strings.Join(m.DownloadCodes(), ","), true
	}
	return "", false
}
