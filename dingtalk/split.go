package dingtalk

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on one message that DingTalk shows well (protocol notes §8).
const (
	// DefaultMaxReplyChars is how many characters a text or markdown
	// message holds before it is split: markdown renders badly above about
	// 3,500 characters.
	DefaultMaxReplyChars = 3500
	// MaxReplyBytes bounds the JSON-escaped text of one message: a webhook
	// message is at most 20,000 bytes and the OpenAPI's msgParam at most
	// 15,000; the rest is room for the title and the JSON around the text.
	MaxReplyBytes = 14000
)

// SplitLimits bound each part of a split text. A zero field sets no bound.
type SplitLimits struct {
	// MaxChars bounds a part's characters (Unicode code points).
	MaxChars int
	// MaxBytes bounds the length of a part once escaped as a JSON string,
	// without the quotes, which is what DingTalk's byte limits count.
	MaxBytes int
}

// ReplyLimits are the limits the gateway splits replies at, with maxChars
// characters (DefaultMaxReplyChars when not positive) and MaxReplyBytes.
func ReplyLimits(maxChars int) SplitLimits {
	if maxChars <= 0 {
		maxChars = DefaultMaxReplyChars
	}
	return SplitLimits{MaxChars: maxChars, MaxBytes: MaxReplyBytes}
}

// SplitText cuts s into parts within lim whose concatenation, in order, is
// s. A cut falls after a paragraph break, else after a line break, else
// after a space, when one lies in the second half of the part; otherwise
// after the last character that fits. It never falls inside a UTF-8
// sequence. Every part holds at least one character, so a limit smaller
// than a character still makes progress.
func SplitText(s string, lim SplitLimits) []string {
	var parts []string
	for len(s) > 0 {
		n := fit(s, lim)
		if n < len(s) {
			n = boundary(s[:n])
		}
		parts = append(parts, s[:n])
		s = s[n:]
	}
	return parts
}

// SplitMarkdown is SplitText for markdown: a part that ends inside a fenced
// code block closes it, and the next part opens it again with the same fence
// line (language included), so that each part renders on its own. Apart from
// those added lines, the parts joined are s.
func SplitMarkdown(s string, lim SplitLimits) []string {
	fences := scanFences(s)
	// Leave room in every part for the longest fence line before it and its
	// closing line after it. A part still holds a whole fence line and a
	// character: only with a fence line longer than a third of the limits
	// does a part go over them, by the repeated fence lines.
	longest := ""
	for _, f := range fences {
		for _, line := range []string{f.line, s[f.closeStart:f.end]} {
			if len(line) > len(longest) {
				longest = line
			}
		}
	}
	room := lim
	if room.MaxChars > 0 && longest != "" {
		chars := utf8.RuneCountInString(longest)
		room.MaxChars = max(chars+1, room.MaxChars-2*(chars+1))
	}
	if room.MaxBytes > 0 && longest != "" {
		bytes := jsonLen(longest)
		room.MaxBytes = max(bytes+6, room.MaxBytes-2*(bytes+2))
	}
	var parts []string
	for off := 0; off < len(s); {
		end := off + fit(s[off:], room)
		if end < len(s) {
			end = off + boundary(s[off:end])
			// A cut inside a fence line would leave half a fence on
			// either side: cut before the line instead.
			if lineStart := insideFenceLine(fences, end); lineStart > off {
				end = lineStart
			}
			end = avoidNewFence(s, fences, off, end)
		}
		part := s[off:end]
		if open := openFenceAt(fences, off); open != nil {
			part = open.line + "\n" + part
		}
		if open := openFenceAt(fences, end); open != nil && end < len(s) {
			if !strings.HasSuffix(part, "\n") {
				part += "\n"
			}
			part += open.closing()
		}
		parts = append(parts, part)
		off = end
	}
	return parts
}

// fit returns the length of the longest prefix of s within lim that ends on
// a character boundary, at least one character.
func fit(s string, lim SplitLimits) int {
	chars, bytes := 0, 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		chars++
		bytes += jsonRuneLen(r, size)
		if i > 0 && (lim.MaxChars > 0 && chars > lim.MaxChars || lim.MaxBytes > 0 && bytes > lim.MaxBytes) {
			return i
		}
		i += size
	}
	return len(s)
}

// boundary returns where to cut p, a prefix that fits: after its last
// paragraph break, line break or space in its second half, else at its end.
func boundary(p string) int {
	for _, sep := range []string{"\n\n", "\n", " "} {
		if i := strings.LastIndex(p, sep); i >= 0 && i+len(sep) > len(p)/2 {
			return i + len(sep)
		}
	}
	return len(p)
}

// jsonLen is the length of s escaped as a JSON string by encoding/json.
func jsonLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n += jsonRuneLen(r, size)
		i += size
	}
	return n
}

// jsonRuneLen is how long encoding/json writes rune r, which took size bytes.
func jsonRuneLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
		return 6 // \ufffd, \u2028, \u2029
	case r == '"', r == '\\', r == '\n', r == '\r', r == '\t', r == '\b', r == '\f':
		return 2
	case r < 0x20, r == '<', r == '>', r == '&':
		return 6 // \u00XX
	}
	return size
}

// avoidNewFence moves a cut at end, inside a line, that would make either
// half of the line a fence line on its own: one that opens a code block
// outside of one, or closes the code block the cut is in. It moves the cut
// before the line when the part can end there, else back by up to eight
// characters, else to after the line's first or second character; when
// none of those will do, the cut stays.
func avoidNewFence(s string, fences []fence, off, end int) int {
	lineStart := strings.LastIndexByte(s[:end], '\n') + 1
	inside := openFenceAt(fences, end)
	if !fenceAtCut(s, lineStart, end, inside) {
		return end
	}
	if lineStart > off {
		return lineStart
	}
	cut := end
	for range 8 {
		_, size := utf8.DecodeLastRuneInString(s[lineStart:cut])
		if cut -= size; cut <= off {
			break
		}
		if !fenceAtCut(s, lineStart, cut, inside) {
			return cut
		}
	}
	cut = lineStart
	for range 2 {
		_, size := utf8.DecodeRuneInString(s[cut:])
		if cut += size; cut > off && cut < end && !fenceAtCut(s, lineStart, cut, inside) {
			return cut
		}
	}
	return end
}

// fenceAtCut reports whether a cut at end, inside the line starting at
// lineStart, leaves a fence line before or after it: one that opens a
// block, or with inside set, one that closes inside.
func fenceAtCut(s string, lineStart, end int, inside *fence) bool {
	if end == lineStart {
		return false
	}
	lineEnd := strings.IndexByte(s[end:], '\n')
	if lineEnd < 0 {
		lineEnd = len(s)
	} else {
		lineEnd += end
	}
	isFence := opensFence
	if inside != nil {
		isFence = inside.closedBy
	}
	return isFence(s[lineStart:end]) || isFence(s[end:lineEnd])
}

// opensFence reports whether line, on its own, is a fence line.
func opensFence(line string) bool {
	char, count, rest := fenceLine(line)
	return count > 0 && !(char == '`' && strings.Contains(rest, "`"))
}

// fence is a fenced code block of a markdown text, by offsets into it.
type fence struct {
	start      int    // where the opening line starts
	openEnd    int    // where the opening line ends, before its line break
	closeStart int    // where the closing line starts; the text's end when never closed
	end        int    // where the closing line ends; the text's end when never closed
	line       string // the opening line
	char       byte   // ` or ~
	count      int    // how many of char open it
}

// closedBy reports whether line closes f.
func (f *fence) closedBy(line string) bool {
	char, count, rest := fenceLine(line)
	return char == f.char && count >= f.count && strings.TrimSpace(rest) == ""
}

// closing is the line that closes f.
func (f *fence) closing() string { return strings.Repeat(string(f.char), f.count) }

// openFenceAt returns the fence whose content a cut at offset falls in:
// after its opening line and up to the start of its closing line.
func openFenceAt(fences []fence, offset int) *fence {
	for i := range fences {
		f := &fences[i]
		if offset >= f.openEnd && offset <= f.closeStart && offset < f.end {
			return f
		}
	}
	return nil
}

// insideFenceLine returns the start of the opening or closing fence line
// that offset falls strictly inside, or -1.
func insideFenceLine(fences []fence, offset int) int {
	for _, f := range fences {
		switch {
		case offset > f.start && offset < f.openEnd:
			return f.start
		case offset > f.closeStart && offset < f.end:
			return f.closeStart
		}
	}
	return -1
}

// scanFences finds the fenced code blocks of s, as CommonMark opens and
// closes them: a line of at least three backticks or tildes, indented by
// at most three spaces, closed by a line of at least as many of the same
// character and nothing else.
func scanFences(s string) []fence {
	var fences []fence
	var open *fence
	for start := 0; start < len(s); {
		end := strings.IndexByte(s[start:], '\n')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		line := s[start:end]
		char, count, _ := fenceLine(line)
		switch {
		case open == nil && opensFence(line):
			fences = append(fences, fence{start: start, openEnd: end, closeStart: len(s), end: len(s), line: line, char: char, count: count})
			open = &fences[len(fences)-1]
		case open != nil && open.closedBy(line):
			open.closeStart, open.end = start, end
			open = nil
		}
		start = end + 1
	}
	return fences
}

// fenceLine reads a fence at the start of line: its character, how many
// (0 when line is not a fence) and what follows them.
func fenceLine(line string) (char byte, count int, rest string) {
	trimmed := strings.TrimLeft(line, " ")
	if len(line)-len(trimmed) > 3 || trimmed == "" || (trimmed[0] != '`' && trimmed[0] != '~') {
		return 0, 0, ""
	}
	char = trimmed[0]
	for count < len(trimmed) && trimmed[count] == char {
		count++
	}
	if count < 3 {
		return 0, 0, ""
	}
	return char, count, trimmed[count:]
}

// Split returns o as messages within lim, to be posted in order: a text or
// markdown message whose text is over the limits becomes several, cut by
// SplitText or SplitMarkdown; a markdown title gets " (i/n)". Only the last
// part keeps o's @s, where MentionSender put the @ in the text, so that
// nobody is notified once per part. Other types are returned as they are.
func (o *OutgoingMessage) Split(lim SplitLimits) []*OutgoingMessage {
	switch {
	case o.MsgType == MsgTypeText && o.Text != nil:
		texts := SplitText(o.Text.Content, lim)
		if len(texts) < 2 {
			return []*OutgoingMessage{o}
		}
		parts := make([]*OutgoingMessage, len(texts))
		for i, text := range texts {
			parts[i] = NewText(text)
		}
		parts[len(parts)-1].At = o.At
		return parts
	case o.MsgType == MsgTypeMarkdown && o.Markdown != nil:
		texts := SplitMarkdown(o.Markdown.Text, lim)
		if len(texts) < 2 {
			return []*OutgoingMessage{o}
		}
		parts := make([]*OutgoingMessage, len(texts))
		for i, text := range texts {
			title := o.Markdown.Title + " (" + strconv.Itoa(i+1) + "/" + strconv.Itoa(len(texts)) + ")"
			parts[i] = NewMarkdown(strings.TrimLeft(title, " "), text)
		}
		parts[len(parts)-1].At = o.At
		return parts
	}
	return []*OutgoingMessage{o}
}
