package dingtalk

import "unicode/utf8"

// AppendJSON appends o's JSON to b: the bytes encoding/json's Marshal
// gives for o (FuzzAppendJSON and TestAppendJSONEncodesEveryField hold it
// to that), written without reflection, since the dingtalk_reply handler
// encodes one for every callback. Benchmark: BenchmarkReplyText, where
// json.Marshal was about a third of the handler's time.
func (o *OutgoingMessage) AppendJSON(b []byte) []byte {
	b = appendField(append(b, '{'), "msgtype", o.MsgType)
	if t := o.Text; t != nil {
		b = append(appendField(append(b, `,"text":{`...), "content", t.Content), '}')
	}
	if m := o.Markdown; m != nil {
		b = appendField(append(b, `,"markdown":{`...), "title", m.Title)
		b = append(appendField(append(b, ','), "text", m.Text), '}')
	}
	if l := o.Link; l != nil {
		b = appendField(append(b, `,"link":{`...), "title", l.Title)
		b = appendField(append(b, ','), "text", l.Text)
		b = appendOptional(b, "picUrl", l.PicURL)
		b = append(appendField(append(b, ','), "messageUrl", l.MessageURL), '}')
	}
	if c := o.ActionCard; c != nil {
		b = appendField(append(b, `,"actionCard":{`...), "title", c.Title)
		b = appendField(append(b, ','), "text", c.Text)
		b = appendOptional(b, "singleTitle", c.SingleTitle)
		b = appendOptional(b, "singleURL", c.SingleURL)
		b = appendOptional(b, "btnOrientation", c.BtnOrientation)
		if len(c.Btns) > 0 {
			b = append(b, `,"btns":[`...)
			for i, btn := range c.Btns {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendField(append(b, '{'), "title", btn.Title)
				b = append(appendField(append(b, ','), "actionURL", btn.ActionURL), '}')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	if f := o.FeedCard; f != nil {
		b = append(b, `,"feedCard":{"links":`...)
		if f.Links == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, l := range f.Links {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendField(append(b, '{'), "title", l.Title)
				b = appendField(append(b, ','), "messageURL", l.MessageURL)
				b = append(appendField(append(b, ','), "picURL", l.PicURL), '}')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	if a := o.At; a != nil {
		b = append(b, `,"at":{`...)
		first := true
		for _, ids := range [...]struct {
			name string
			ids  []string
		}{{"atUserIds", a.AtUserIDs}, {"atDingtalkIds", a.AtDingtalkIDs}} {
			if len(ids.ids) == 0 {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(append(append(b, '"'), ids.name...), `":[`...)
			for i, id := range ids.ids {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, id)
			}
			b = append(b, ']')
		}
		if a.IsAtAll {
			if !first {
				b = append(b, ',')
			}
			b = append(b, `"isAtAll":true`...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendField appends "name":value; name needs no escaping.
func appendField(b []byte, name, value string) []byte {
	return appendString(append(append(append(b, '"'), name...), `":`...), value)
}

// appendOptional appends ,"name":value unless value is empty (omitempty).
func appendOptional(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	return appendField(append(b, ','), name, value)
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it: also <, > and & (so that the JSON is safe in HTML), U+2028
// and U+2029 (JavaScript's line separators), and invalid UTF-8 replaced
// by U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
