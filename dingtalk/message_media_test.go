package dingtalk_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

func TestDownloadCodes(t *testing.T) {
	for file, want := range map[string][]string{
		"picture.json":     {"dcExample=="},
		"rich_text.json":   {"dcExample2=="},
		"file.json":        {"dcFile=="},
		"audio.json":       {"dcAudio=="},
		"video.json":       {"dcVideo=="},
		"single_text.json": nil,
		"unknown.json":     nil,
	} {
		body, err := os.ReadFile(filepath.Join("testdata", "callbacks", file))
		if err != nil {
			t.Fatal(err)
		}
		m, err := dingtalk.ParseMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.DownloadCodes(); !slices.Equal(got, want) {
			t.Errorf("%s: DownloadCodes() = %q, want %q", file, got, want)
		}
	}
	two := dingtalk.Message{Content: []byte(`{"richText":[{"type":"picture","downloadCode":"a"},{"text":"x"},{"type":"picture","downloadCode":"b/+="}]}`)}
	if got := two.DownloadCodes(); !slices.Equal(got, []string{"a", "b/+="}) {
		t.Errorf("two pictures: %q", got)
	}
}
