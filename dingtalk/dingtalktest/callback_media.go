package dingtalktest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// NewDownloadCode returns a fresh downloadCode shaped like DingTalk's: the
// handle of a received picture, recording, video or file, which the
// OpenAPI's messageFiles/download turns into a URL.
func NewDownloadCode() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// mediaContent is the content of c's msgtype, as DingTalk sends it (the
// protocol notes, section 2): downloadCode is c's, or a fresh one.
func mediaContent(c Callback) json.RawMessage {
	code := or(c.DownloadCode, NewDownloadCode())
	var content any
	switch c.MsgType {
	case dingtalk.MsgTypePicture:
		content = map[string]string{"pictureDownloadCode": NewDownloadCode(), "downloadCode": code}
	case dingtalk.MsgTypeRichText:
		content = map[string]any{"richText": []dingtalk.RichTextPart{
			{Text: c.Text},
			{Type: dingtalk.MsgTypePicture, DownloadCode: code, PictureDownloadCode: NewDownloadCode()},
		}}
	case dingtalk.MsgTypeAudio:
		content = map[string]string{"downloadCode": code, "recognition": c.Text}
	case dingtalk.MsgTypeVideo:
		content = map[string]string{"duration": "5", "videoType": "mp4", "downloadCode": code}
	case dingtalk.MsgTypeFile:
		content = map[string]string{"spaceId": "20000001", "fileName": "report.pdf", "downloadCode": code, "fileId": "30000001"}
	default:
		return nil
	}
	raw, err := json.Marshal(content)
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return raw
}
