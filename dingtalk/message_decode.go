package dingtalk

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseMessage's fast path. encoding/json spends most of a callback's
// verification in reflection and in one allocation per string field; this
// decoder reads the shape DingTalk sends (an object of Message's keys with
// plain strings, integers, booleans, the text object and the atUsers array)
// in one pass, and all its strings are parts of the body.
//
// It decodes exactly what encoding/json would, or gives up: at the first
// thing it does not handle (a \u escape, invalid UTF-8, null, a
// value of another type, a repeated key, a key that encoding/json would
// match case-insensitively, invalid JSON) it reports false and ParseMessage
// decodes the body with encoding/json, which defines the behaviour and the
// errors. FuzzParseMessage checks that both agree. Benchmark:
// BenchmarkParseGroupText (BENCHMARKS.md, "Go benchmarks").

// messageDecoder reads one callback body.
type messageDecoder struct {
	s     string        // the body; every decoded string is a part of it
	i     int           // the next byte to read
	seen  uint32        // the keys read so far, one bit each
	parts *messageParts // where the text object and the first mentions go
	// skipped is set when a value was passed over unread (an unknown key's,
	// or content): its keys and its nesting are unknown.
	skipped bool
}

// messageParts is what ParseMessage allocates at once: the message, its
// text object, and room for the mentions of a group message (usually just
// the robot).
type messageParts struct {
	m       Message
	text    TextContent
	atUsers [2]AtUser
}

// decodeMessage fills p.m from body, with p's text and mentions, or reports
// false (p.m is then partly filled). shapeChecked reports that checkShape
// has nothing left to refuse: every top-level key was one of Message's,
// spelled exactly, once, and nothing nests deeper than atUsers' objects.
// DingTalk's text messages are all like that.
func decodeMessage(body string, p *messageParts) (ok, shapeChecked bool) {
	d := messageDecoder{s: body, parts: p}
	ok = d.message(&p.m)
	d.space()
	ok = ok && d.i == len(d.s)
	return ok, ok && !d.skipped
}

// messageKeyNames are Message's JSON keys, for the fast path's check that an
// unknown key is not one of them in other letter case.
var messageKeyNames = slices.Sorted(maps.Keys(messageKeys))

// message reads the top-level object into m.
func (d *messageDecoder) message(m *Message) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	prev := keyCount // the object's start
	for {
		key, k, ok := d.messageKey(prev)
		if !ok || !d.next(':') || !d.field(k, key, m) {
			return false
		}
		if k != keyUnknown {
			learnKeyAfter(prev, k)
			prev = k
		}
		if !d.next(',') {
			return d.next('}')
		}
	}
}

// field reads the value of the key at position k (keyUnknown: key, which is
// not one of Message's) into m.
func (d *messageDecoder) field(k int, key string, m *Message) bool {
	var ok bool
	switch k {
	case keyMsgType:
		m.MsgType, ok = d.str()
	case keyMsgID:
		m.MsgID, ok = d.str()
	case keyText:
		m.Text, ok = d.readText()
	case keyContent:
		var raw string
		raw, ok = d.skip()
		m.Content = json.RawMessage(raw)
	case keyCreateAt:
		m.CreateAt, ok = d.millis()
	case keyConversationType:
		m.ConversationType, ok = d.str()
	case keyConversationID:
		m.ConversationID, ok = d.str()
	case keyConversationTitle:
		m.ConversationTitle, ok = d.str()
	case keySenderID:
		m.SenderID, ok = d.str()
	case keySenderNick:
		m.SenderNick, ok = d.str()
	case keySenderStaffID:
		m.SenderStaffID, ok = d.str()
	case keySenderCorpID:
		m.SenderCorpID, ok = d.str()
	case keySenderUnionID:
		m.SenderUnionID, ok = d.str()
	case keySenderPlatform:
		m.SenderPlatform, ok = d.str()
	case keySessionWebhook:
		m.SessionWebhook, ok = d.str()
	case keySessionWebhookExpiredTime:
		m.SessionWebhookExpiredTime, ok = d.millis()
	case keyIsAdmin:
		m.IsAdmin, ok = d.boolean()
	case keyIsInAtList:
		m.IsInAtList, ok = d.boolean()
	case keyAtUsers:
		m.AtUsers, ok = d.atUsers()
	case keyChatbotCorpID:
		m.ChatbotCorpID, ok = d.str()
	case keyChatbotUserID:
		m.ChatbotUserID, ok = d.str()
	case keyRobotCode:
		m.RobotCode, ok = d.str()
	default:
		return d.unknown(key, messageKeyNames)
	}
	if d.seen&(1<<k) != 0 {
		return false // encoding/json would merge a repeated text object: leave repeats to it
	}
	d.seen |= 1 << k
	return ok
}

// readText reads the text object into the message's parts.
func (d *messageDecoder) readText() (*TextContent, bool) {
	t := &d.parts.text
	seen := false
	ok := d.object(func(key string) bool {
		if key != "content" {
			return d.unknown(key, []string{"content"})
		}
		if seen {
			return false // encoding/json keeps the last: leave repeats to it
		}
		seen = true
		var ok bool
		t.Content, ok = d.str()
		return ok
	})
	return t, ok
}

// atUsers reads an array of {"dingtalkId": ..., "staffId": ...} objects.
func (d *messageDecoder) atUsers() ([]AtUser, bool) {
	users := d.parts.atUsers[:0] // encoding/json makes [] an empty, non-nil slice
	if !d.next('[') {
		return nil, false
	}
	if d.next(']') {
		return users, true
	}
	for {
		var u AtUser
		var seenID, seenStaff bool
		ok := d.object(func(key string) bool {
			var ok bool
			switch {
			case key == "dingtalkId" && !seenID:
				seenID = true
				u.DingtalkID, ok = d.str()
			case key == "staffId" && !seenStaff:
				seenStaff = true
				u.StaffID, ok = d.str()
			case key == "dingtalkId" || key == "staffId":
				return false // repeated
			default:
				return d.unknown(key, []string{"dingtalkId", "staffId"})
			}
			return ok
		})
		if !ok {
			return nil, false
		}
		users = append(users, u)
		if d.next(']') {
			return users, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// object reads an object, calling field for each key with the decoder at
// its value.
func (d *messageDecoder) object(field func(key string) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok || !d.next(':') || !field(key) {
			return false
		}
		if !d.next(',') {
			return d.next('}')
		}
	}
}

// unknown skips the value of a key that is not among known. encoding/json
// would fill a field whose key equals it case-insensitively: not here.
func (d *messageDecoder) unknown(key string, known []string) bool {
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return false
		}
	}
	_, ok := d.skip()
	return ok
}

// str reads a string in valid UTF-8. Only the one-letter escape sequences
// are handled (\n in a multi-line text); a \u sequence gives up.
func (d *messageDecoder) str() (string, bool) {
	if !d.next('"') {
		return "", false
	}
	s, start := d.s, d.i
	i := start + plainPrefix(s[start:]) // s[start:i] is plain
	if i < len(s) && s[i] == '"' {
		d.i = i + 1
		return s[start:i], true
	}
	// The loop works on copies of the decoder's fields: through the
	// pointer, each byte would cost a load and a store of d.i.
	ascii := true
	for ; i < len(s); i++ {
		c := s[i]
		if plainASCII[c] {
			continue
		}
		switch {
		case c == '"':
			d.i = i + 1
			v := s[start:i]
			return v, ascii || utf8.ValidString(v)
		case c == '\\':
			d.i = i
			return d.unescape(start)
		case c < 0x20:
			return "", false
		}
		ascii = false
	}
	return "", false
}

// plainASCII marks the bytes a string holds as they are: ASCII, but for
// control characters, the quote and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// unescape reads the rest of a string that started at start and has an
// escape sequence at the decoder's position.
func (d *messageDecoder) unescape(start int) (string, bool) {
	end := d.i // an upper bound of the string's end, for the buffer's size
	for end < len(d.s) && d.s[end] != '"' {
		if d.s[end] == '\\' {
			end++
		}
		end++
	}
	b := make([]byte, 0, min(end, len(d.s))-start)
	b = append(b, d.s[start:d.i]...)
	for d.i < len(d.s) {
		c := d.s[d.i]
		d.i++
		switch {
		case c == '"':
			return string(b), utf8.Valid(b)
		case c < 0x20 || c == '\\' && d.i == len(d.s):
			return "", false
		case c == '\\':
			e := d.s[d.i]
			d.i++
			switch e {
			case '"', '\\', '/':
				c = e
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			default:
				return "", false // \u, whose surrogates encoding/json handles
			}
		}
		b = append(b, c)
	}
	return "", false
}

// millis reads a Millis: an integer, or a string of one.
func (d *messageDecoder) millis() (Millis, bool) {
	d.space()
	var text string
	if d.i < len(d.s) && d.s[d.i] == '"' {
		var ok bool
		if text, ok = d.str(); !ok {
			return 0, false
		}
	} else {
		// On copies of the decoder's fields, as in str.
		s, start := d.s, d.i
		digits := start
		if digits < len(s) && s[digits] == '-' {
			digits++
		}
		end := digits
		for end < len(s) && s[end]-'0' <= 9 {
			end++
		}
		d.i = end
		// JSON allows no leading zero; a fraction or an exponent that
		// follows makes the next token wrong.
		if end == digits || s[digits] == '0' && end > digits+1 {
			return 0, false
		}
		if n, ok := decimal(s[digits:end]); ok { // all but the rare 19 digits
			if digits > start {
				n = -n
			}
			return Millis(n), true
		}
		text = s[start:end]
	}
	n, err := strconv.ParseInt(text, 10, 64)
	return Millis(n), err == nil
}

// boolean reads true or false.
func (d *messageDecoder) boolean() (bool, bool) {
	d.space()
	switch {
	case strings.HasPrefix(d.s[d.i:], "true"):
		d.i += len("true")
		return true, true
	case strings.HasPrefix(d.s[d.i:], "false"):
		d.i += len("false")
		return false, true
	}
	return false, false
}

// skip passes over one value of any kind and returns its text, which must
// be valid JSON.
func (d *messageDecoder) skip() (string, bool) {
	d.skipped = true
	d.space()
	start, depth := d.i, 0
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			if !d.skipString() {
				return "", false
			}
		case c == '{' || c == '[':
			depth++
			d.i++
		case c == '}' || c == ']':
			if depth == 0 {
				return d.valid(start) // the enclosing object ends: a number or a literal ended
			}
			depth--
			d.i++
		case c == ',' && depth == 0:
			return d.valid(start)
		default:
			d.i++
		}
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			return d.valid(start) // a string, an object or an array ended
		}
	}
	return "", false
}

// skipString passes over a string, escape sequences and all.
func (d *messageDecoder) skipString() bool {
	for d.i++; d.i < len(d.s); d.i++ {
		switch d.s[d.i] {
		case '\\':
			d.i++
		case '"':
			d.i++
			return true
		}
	}
	return false
}

// valid returns the text from start to the decoder's position, without
// trailing space, if it is one valid JSON value.
func (d *messageDecoder) valid(start int) (string, bool) {
	v := strings.TrimRight(d.s[start:d.i], " \t\r\n")
	return v, v != "" && json.Valid([]byte(v))
}

// next skips white space and reads c, if it comes next. DingTalk's bodies
// have no white space between tokens: c is looked for before the space.
func (d *messageDecoder) next(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	d.space()
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// space skips JSON white space. Every byte that may start a token is above
// the space: one comparison tells it.
func (d *messageDecoder) space() {
	for d.i < len(d.s) && d.s[d.i] <= ' ' {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}
