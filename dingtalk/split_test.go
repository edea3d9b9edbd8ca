package dingtalk_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// pieces are what the property tests build texts from: words, CJK and
// emoji (multi-byte sequences), characters JSON escapes to six bytes,
// paragraph and line breaks, and fence lines (and near misses: too short,
// indented four spaces, with a backtick in the info string).
var pieces = []string{
	"word ", "another ", "杭州天气", "😀", "<&>", "\u2028", "\t", `"quoted" `,
	"\n", "\n\n", "```go\n", "```\n", "~~~\n", "~~~~ text\n", "  ```\n", "    ```\n", "``\n", "``` a`b\n",
	strings.Repeat("x", 120),
}

func randomText(rng *rand.Rand) string {
	var b strings.Builder
	for n := rng.IntN(400); n > 0; n-- {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

func randomLimits(rng *rand.Rand) dingtalk.SplitLimits {
	return dingtalk.SplitLimits{MaxChars: 40 + rng.IntN(400), MaxBytes: 60 + rng.IntN(1200)}
}

// jsonLen is the length of s as encoding/json escapes it, without quotes.
func jsonLen(t *testing.T, s string) int {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return len(b) - 2
}

func checkWithin(t *testing.T, part string, lim dingtalk.SplitLimits) {
	t.Helper()
	if n := utf8.RuneCountInString(part); n > lim.MaxChars {
		t.Fatalf("a part has %d characters, over the limit of %d: %q", n, lim.MaxChars, part)
	}
	if n := jsonLen(t, part); n > lim.MaxBytes {
		t.Fatalf("a part has %d JSON bytes, over the limit of %d: %q", n, lim.MaxBytes, part)
	}
}

func TestSplitTextProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		s, lim := randomText(rng), randomLimits(rng)
		parts := dingtalk.SplitText(s, lim)
		if got := strings.Join(parts, ""); got != s {
			t.Fatalf("the parts joined differ from the text:\n%q\n%q", got, s)
		}
		for _, p := range parts {
			checkWithin(t, p, lim)
			if p == "" || !utf8.ValidString(p) {
				t.Fatalf("part %q is empty or cut inside a UTF-8 sequence", p)
			}
		}
	}
}

// fenceLines reads markdown's lines by CommonMark's fence rule, written
// apart from the package's: for each line, whether it opens or closes a
// fenced code block; and whether the text ends inside one.
func fenceLines(markdown string) (lines []string, isFence []bool, openAtEnd bool) {
	var open string
	lines = strings.Split(markdown, "\n")
	isFence = make([]bool, len(lines))
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		if len(line)-len(trimmed) > 3 {
			continue
		}
		for _, c := range []string{"`", "~"} {
			run := len(trimmed) - len(strings.TrimLeft(trimmed, c))
			if run < 3 {
				continue
			}
			rest := trimmed[run:]
			switch {
			case open == "" && !(c == "`" && strings.Contains(rest, "`")):
				open, isFence[i] = strings.Repeat(c, run), true
			case open != "" && strings.HasPrefix(trimmed, open) && open[0] == c[0] && strings.TrimSpace(rest) == "":
				open, isFence[i] = "", true
			}
		}
	}
	return lines, isFence, open != ""
}

// openAtEnd reports whether markdown ends inside a fenced code block.
func openAtEnd(markdown string) bool {
	_, _, open := fenceLines(markdown)
	return open
}

// withoutFences drops fence lines and line breaks: what a split may add.
func withoutFences(markdown string) string {
	var b strings.Builder
	lines, isFence, _ := fenceLines(markdown)
	for i, line := range lines {
		if !isFence[i] {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestSplitMarkdownProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		s, lim := randomText(rng), randomLimits(rng)
		parts := dingtalk.SplitMarkdown(s, lim)
		if got, want := withoutFences(strings.Join(parts, "\n")), withoutFences(s); got != want {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Fatalf("the parts hold other text than the markdown, from byte %d:\n%q\n%q\nparts: %q", i, got[i:min(len(got), i+80)], want[i:min(len(want), i+80)], parts)
		}
		for i, p := range parts {
			checkWithin(t, p, lim)
			if !utf8.ValidString(p) {
				t.Fatalf("part %q is cut inside a UTF-8 sequence", p)
			}
			last := i == len(parts)-1
			if openAtEnd(p) && !(last && openAtEnd(s)) {
				t.Fatalf("part %d of %d leaves a code fence open:\n%s", i+1, len(parts), p)
			}
		}
	}
}

func TestSplitMarkdownReopensTheFenceWithItsLanguage(t *testing.T) {
	code := strings.Repeat("fmt.Println(1)\n", 20)
	s := "Intro paragraph.\n\n```go\n" + code + "```\n\nDone."
	parts := dingtalk.SplitMarkdown(s, dingtalk.SplitLimits{MaxChars: 120})
	if len(parts) < 3 {
		t.Fatalf("got %d parts, want at least 3", len(parts))
	}
	for i, p := range parts[1 : len(parts)-1] {
		if !strings.HasPrefix(p, "```go\n") || !strings.HasSuffix(p, "\n```") {
			t.Errorf("middle part %d does not reopen and close the go fence:\n%s", i+2, p)
		}
	}
}

func TestSplitTextCutsAtParagraphsThenLines(t *testing.T) {
	para := strings.Repeat("a", 60)
	s := para + "\n\n" + para + "\n" + para
	parts := dingtalk.SplitText(s, dingtalk.SplitLimits{MaxChars: 130})
	if len(parts) != 2 || parts[0] != para+"\n\n"+para+"\n" {
		t.Fatalf("parts = %q, want a cut after the line break within the limit", parts)
	}
	parts = dingtalk.SplitText(s, dingtalk.SplitLimits{MaxChars: 100})
	if parts[0] != para+"\n\n" {
		t.Fatalf("first part = %q, want the paragraph", parts[0])
	}
}

func TestSplitKeepsShortMessagesAndNumbersTitles(t *testing.T) {
	short := dingtalk.NewMarkdown("T", "short")
	if got := short.Split(dingtalk.ReplyLimits(0)); len(got) != 1 || got[0] != short {
		t.Fatalf("a short message was changed: %+v", got)
	}
	long := dingtalk.NewMarkdown("Report", strings.Repeat("line of text\n", 1000))
	if err := long.MentionSender(&dingtalk.Message{SenderStaffID: "user123"}); err != nil {
		t.Fatal(err)
	}
	parts := long.Split(dingtalk.ReplyLimits(0))
	if len(parts) != 4 {
		t.Fatalf("%d parts, want 4", len(parts))
	}
	for i, p := range parts {
		if want := "Report (" + string(rune('1'+i)) + "/4)"; p.Markdown.Title != want {
			t.Errorf("title %q, want %q", p.Markdown.Title, want)
		}
		if (p.At != nil) != (i == 3) {
			t.Errorf("part %d: at = %+v; only the last part @s", i+1, p.At)
		}
	}
	if !strings.HasSuffix(parts[3].Markdown.Text, "@user123") {
		t.Error("the last part lost the @")
	}
}

// FuzzSplit checks the splitters' promises on any text: text parts join to
// the text, within the limits, never cut inside UTF-8; markdown parts keep
// the text and leave no code fence open that the text closes.
func FuzzSplit(f *testing.F) {
	f.Add("Intro.\n\n```go\nfmt.Println(1)\n```\n\nDone.", 40, 100)
	f.Add("杭州天气 <&> 😀\u2028"+strings.Repeat("word ", 50), 41, 61)
	f.Add("  ```\n~~~~ text\n``` a`b\n    ```\n", 45, 90)
	f.Fuzz(func(t *testing.T, s string, maxChars, maxBytes int) {
		lim := dingtalk.SplitLimits{MaxChars: 40 + abs(maxChars)%400, MaxBytes: 60 + abs(maxBytes)%1200}
		parts := dingtalk.SplitText(s, lim)
		if strings.Join(parts, "") != s {
			t.Fatalf("the text parts do not join to the text")
		}
		for _, p := range parts {
			checkWithin(t, p, lim)
			if utf8.ValidString(s) && !utf8.ValidString(p) {
				t.Fatalf("part %q is cut inside a UTF-8 sequence", p)
			}
		}
		parts = dingtalk.SplitMarkdown(s, lim)
		if got, want := withoutFences(strings.Join(parts, "\n")), withoutFences(s); got != want {
			t.Fatalf("the markdown parts hold other text:\n%q\n%q", got, want)
		}
		longLine := false
		for _, line := range strings.Split(s, "\n") {
			longLine = longLine || 4*len(line) > lim.MaxChars || 4*jsonLen(t, line) > lim.MaxBytes
		}
		for i, p := range parts {
			if !longLine {
				checkWithin(t, p, lim) // a long fence line leaves no room for its repeats
			}
			if utf8.ValidString(s) && !utf8.ValidString(p) {
				t.Fatalf("part %q is cut inside a UTF-8 sequence", p)
			}
			if openAtEnd(p) && !(i == len(parts)-1 && openAtEnd(s)) {
				t.Fatalf("part %d of %d leaves a code fence open:\n%s", i+1, len(parts), p)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
