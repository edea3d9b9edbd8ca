package aicard

import (
	"strings"
	"testing"
)

// decodeAll feeds body to d in pieces of size bytes and returns the text.
func decodeAll(t *testing.T, d Decoder, body string, size int) (string, error) {
	t.Helper()
	var out strings.Builder
	for len(body) > 0 {
		n := min(size, len(body))
		text, err := d.Decode([]byte(body[:n]))
		out.WriteString(text)
		if err != nil {
			return out.String(), err
		}
		body = body[n:]
	}
	text, err := d.End()
	out.WriteString(text)
	return out.String(), err
}

func TestDecodersReadEveryForm(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body, want string
	}{
		{"openai", "text/event-stream; charset=utf-8",
			"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{\"content\":\"你好，\"}}]}\n\n" +
				": keep-alive\n\n" +
				"data: {\"choices\":[{\"delta\":{\"content\":\"world\\n\"}}]}\r\n\r\n" +
				"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
				"data: [DONE]\n\n",
			"你好，world\n"},
		{"plain sse", "text/event-stream",
			"event: message\ndata: Hello\n\ndata: , two\ndata: lines\r\rdata:  end", "Hello, two\nlines end"},
		{"chunked text", "text/plain; charset=utf-8", "fünf 五 words\n", "fünf 五 words\n"},
		{"markdown", "text/markdown", "# Title\n\n**bold**", "# Title\n\n**bold**"},
	} {
		for _, size := range []int{1, 2, 3, 7, 1 << 20} {
			d, ok := NewDecoder(tc.contentType)
			if !ok {
				t.Fatalf("%s: %q is not a stream type", tc.name, tc.contentType)
			}
			got, err := decodeAll(t, d, tc.body, size)
			if err != nil || got != tc.want {
				t.Errorf("%s in pieces of %d: got %q, %v; want %q", tc.name, size, got, err, tc.want)
			}
		}
	}
}

func TestDecoderRefusals(t *testing.T) {
	if _, ok := NewDecoder("application/json"); ok {
		t.Error("application/json was taken for a stream")
	}
	for name, body := range map[string]string{
		"openai without [DONE]": "data: {\"choices\":[{\"delta\":{\"content\":\"cut\"}}]}\n\n",
		"openai error event":    "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n",
		"openai broken json":    "data: {\"choices\":[]}\n\ndata: {not json\n\n",
		"endless line":          "data: " + strings.Repeat("x", maxEventLine+1),
	} {
		d, _ := NewDecoder("text/event-stream")
		if _, err := decodeAll(t, d, body, 4096); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTextDecoderNeverSplitsACharacter(t *testing.T) {
	d, _ := NewDecoder("text/plain")
	var all string
	for _, piece := range [][]byte{{0xe4}, {0xbd}, {0xa0, 'a', 0xe5}, {0xa5, 0xbd}} {
		text, _ := d.Decode(piece)
		if strings.ContainsRune(text, '\uFFFD') {
			t.Fatalf("piece %x gave %q", piece, text)
		}
		all += text
	}
	if all != "你a好" {
		t.Errorf("the pieces gave %q, want 你a好", all)
	}
	if text, _ := d.Decode([]byte{0xff, 'b'}); text != "\uFFFDb" {
		t.Errorf("an invalid byte gave %q, want U+FFFD", text)
	}
}
