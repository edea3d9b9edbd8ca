package dingtalk

import "encoding/json"

// DownloadCodes returns the downloadCodes of the files a message carries,
// in order: the one of a picture, audio, video or file message, or one per
// picture of a richText message. The OpenAPI turns a code into a temporary
// URL of the file's bytes. pictureDownloadCode is not used: DingTalk's
// download API refuses it. A message without files, or with a content it
// cannot read, gives none.
func (m *Message) DownloadCodes() []string {
	var content struct {
		DownloadCode string `json:"downloadCode"`
		RichText     []struct {
			DownloadCode string `json:"downloadCode"`
		} `json:"richText"`
	}
	if len(m.Content) == 0 || json.Unmarshal(m.Content, &content) != nil {
		return nil
	}
	var codes []string
	if content.DownloadCode != "" {
		codes = append(codes, content.DownloadCode)
	}
	for _, part := range content.RichText {
		if part.DownloadCode != "" {
			codes = append(codes, part.DownloadCode)
		}
	}
	return codes
}
