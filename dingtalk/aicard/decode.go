package aicard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"
)

// maxEventLine bounds one line of an event stream, so that a backend that
// never ends a line cannot make the decoder hold an unbounded one.
const maxEventLine = 1 << 20

// Decoder reads the text out of a streamed answer's bytes. It is not safe
// for concurrent use.
type Decoder interface {
	// Decode takes the next bytes of the body and returns the text they
	// complete (possibly none).
	Decode(p []byte) (string, error)
	// End is called at the end of the body: it returns the text still held
	// back, or an error when the body ended where it should not have.
	End() (string, error)
}

// NewDecoder returns the decoder for a body of contentType: Server-Sent
// Events for text/event-stream, text for text/plain and text/markdown. ok
// is false for other types, which are not streamed text.
func NewDecoder(contentType string) (d Decoder, ok bool) {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	switch mediaType {
	case "text/event-stream":
		return &sseDecoder{}, true
	case "text/plain", "text/markdown":
		return &textDecoder{}, true
	}
	return nil, false
}

// textDecoder passes text through, holding back a UTF-8 sequence split
// between two reads, so that no update ever shows half a character.
type textDecoder struct {
	tail []byte // the start of a split UTF-8 sequence, at most 3 bytes
}

func (d *textDecoder) Decode(p []byte) (string, error) {
	if len(d.tail) > 0 {
		p = append(d.tail, p...)
		d.tail = nil
	}
	cut := completeUTF8(p)
	d.tail = append(d.tail, p[cut:]...)
	return validUTF8(p[:cut]), nil
}

func (d *textDecoder) End() (string, error) {
	s := validUTF8(d.tail)
	d.tail = nil
	return s, nil
}

// completeUTF8 returns the length of p without a UTF-8 sequence that its
// last bytes begin but do not finish.
func completeUTF8(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if utf8.FullRune(p[i:]) {
				return len(p)
			}
			return i
		}
	}
	return len(p)
}

// validUTF8 is p as a string, invalid bytes replaced by U+FFFD.
func validUTF8(p []byte) string {
	return strings.ToValidUTF8(string(p), "\uFFFD")
}

// sseDecoder reads Server-Sent Events. Its first event decides the form:
// OpenAI's chat completions (data is JSON with choices[0].delta.content,
// the stream ends with "data: [DONE]") or plain (each event's data is text,
// events joined as they come).
type sseDecoder struct {
	line   []byte   // the unfinished line
	data   []string // the data lines of the event being read
	openai bool     // the form, once decided
	plain  bool
	done   bool // [DONE] was read
	lastCR bool // the previous chunk ended with \r: a \n starting this one belongs to it
}

func (d *sseDecoder) Decode(p []byte) (string, error) {
	var out strings.Builder
	if d.lastCR && len(p) > 0 && p[0] == '\n' {
		p = p[1:]
	}
	d.lastCR = false
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			if len(d.line)+len(p) > maxEventLine {
				return out.String(), fmt.Errorf("an event stream line is longer than %d bytes", maxEventLine)
			}
			d.line = append(d.line, p...)
			break
		}
		d.line = append(d.line, p[:i]...)
		if p[i] == '\r' {
			if i+1 < len(p) && p[i+1] == '\n' {
				i++
			} else if i+1 == len(p) {
				d.lastCR = true
			}
		}
		p = p[i+1:]
		text, err := d.readLine(d.line)
		d.line = d.line[:0]
		out.WriteString(text)
		if err != nil {
			return out.String(), err
		}
	}
	return out.String(), nil
}

// readLine interprets one line of the stream, returning the text of an
// event it ends.
func (d *sseDecoder) readLine(line []byte) (string, error) {
	if len(line) == 0 {
		return d.dispatch()
	}
	field, value, _ := bytes.Cut(line, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	if string(field) == "data" {
		d.data = append(d.data, string(value))
	}
	// Comments (":"), event:, id: and retry: say nothing about the text.
	return "", nil
}

// dispatch ends the event being read and returns its text.
func (d *sseDecoder) dispatch() (string, error) {
	if len(d.data) == 0 {
		return "", nil
	}
	data := strings.Join(d.data, "\n")
	d.data = d.data[:0]
	if d.done {
		return "", nil // nothing counts after [DONE]
	}
	if !d.plain && !d.openai {
		d.openai = isOpenAIChunk(data)
		d.plain = !d.openai
	}
	if d.plain {
		return validUTF8([]byte(data)), nil
	}
	if data == "[DONE]" {
		d.done = true
		return "", nil
	}
	return openAIText(data)
}

func (d *sseDecoder) End() (string, error) {
	text, err := d.readLine(d.line) // a last line without its newline
	d.line = nil
	if err != nil {
		return text, err
	}
	rest, err := d.dispatch() // a last event without its blank line
	text += rest
	if err == nil && d.openai && !d.done {
		err = errors.New("the OpenAI-style event stream ended without data: [DONE]")
	}
	return text, err
}

// openAIChunk is the part of a chat.completion.chunk that carries text.
type openAIChunk struct {
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// isOpenAIChunk reports whether an event's data is in OpenAI's form.
func isOpenAIChunk(data string) bool {
	if data == "[DONE]" {
		return true
	}
	var c openAIChunk
	return strings.HasPrefix(data, "{") && json.Unmarshal([]byte(data), &c) == nil && (c.Choices != nil || c.Error != nil)
}

// openAIText returns the text of one chunk; an error event (OpenAI sends
// one when the generation fails mid-stream) is an error.
func openAIText(data string) (string, error) {
	var c openAIChunk
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return "", fmt.Errorf("an event of the OpenAI-style stream is not its JSON: %w", err)
	}
	if c.Error != nil {
		return "", fmt.Errorf("the backend's stream reported an error: %q", c.Error.Message)
	}
	if len(c.Choices) == 0 || c.Choices[0].Delta.Content == nil {
		return "", nil // a role or a finish_reason, no text
	}
	return *c.Choices[0].Delta.Content, nil
}
