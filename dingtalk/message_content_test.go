package dingtalk

import "testing"

// {http.dingtalk.text} of a richText is its text parts; HasMedia tells a
// message with a picture, recording, video or file.
func TestRichTextAndMedia(t *testing.T) {
	for _, tc := range []struct {
		file, text string
		media      bool
	}{
		{"rich_text.json", "see the picture:thanks", true},
		{"picture.json", "", true},
		{"audio.json", "", true},
		{"video.json", "", true},
		{"file.json", "", true},
		{"group_text.json", "hello robot", false},
		{"unknown.json", "", false},
	} {
		m, err := ParseMessage(readCallback(t, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.TrimmedText(); got != tc.text {
			t.Errorf("%s: TrimmedText() = %q, want %q", tc.file, got, tc.text)
		}
		if got := m.HasMedia(); got != tc.media {
			t.Errorf("%s: HasMedia() = %v, want %v", tc.file, got, tc.media)
		}
	}

	textOnly := &Message{MsgType: MsgTypeRichText, Content: []byte(`{"richText":[{"text":" line one\n"},{"text":"line two "}]}`)}
	if got := textOnly.TrimmedText(); got != "line one\nline two" || textOnly.HasMedia() {
		t.Errorf("a richText of text parts: %q, media %v", got, textOnly.HasMedia())
	}
	broken := &Message{MsgType: MsgTypeRichText, Content: []byte(`{"richText":"not a list"}`)}
	if broken.TrimmedText() != "" || broken.HasMedia() || len(broken.RichText()) != 0 {
		t.Error("a richText of another shape has text, parts or media")
	}
}
