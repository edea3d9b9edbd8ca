package dingtalk

import (
	"encoding/json"
	"strings"
)

// Message types a robot receives besides text (outgoing.go's MsgTypeText).
// The media types' content has a downloadCode, which the OpenAPI turns
// into a URL.
const (
	MsgTypeRichText = "richText"
	MsgTypePicture  = "picture"
	MsgTypeAudio    = "audio"
	MsgTypeVideo    = "video"
	MsgTypeFile     = "file"
)

// RichTextPart is one part of a richText message: a piece of text, or a
// picture (Type "picture") with its download code.
type RichTextPart struct {
	Text                string `json:"text,omitempty"`
	Type                string `json:"type,omitempty"`
	DownloadCode        string `json:"downloadCode,omitempty"`
	PictureDownloadCode string `json:"pictureDownloadCode,omitempty"`
}

// RichText returns the parts of a richText message; other types, and a
// content that is not a richText's, give none.
func (m *Message) RichText() []RichTextPart {
	if m.MsgType != MsgTypeRichText || len(m.Content) == 0 {
		return nil
	}
	var content struct {
		RichText []RichTextPart `json:"richText"`
	}
	if json.Unmarshal(m.Content, &content) != nil {
		return nil
	}
	return content.RichText
}

// HasMedia reports whether the message carries a picture, a recording, a
// video or a file: a media type, or a richText with a part that is not text.
func (m *Message) HasMedia() bool {
	switch m.MsgType {
	case MsgTypePicture, MsgTypeAudio, MsgTypeVideo, MsgTypeFile:
		return true
	case MsgTypeRichText:
		for _, part := range m.RichText() {
			if part.Type != "" && part.Type != MsgTypeText {
				return true
			}
		}
	}
	return false
}

// richTextText is the text parts of a richText message, concatenated as
// DingTalk shows them, trimmed.
func (m *Message) richTextText() string {
	var b strings.Builder
	for _, part := range m.RichText() {
		if part.Type == "" || part.Type == MsgTypeText {
			b.WriteString(part.Text)
		}
	}
	return strings.TrimSpace(b.String())
}
