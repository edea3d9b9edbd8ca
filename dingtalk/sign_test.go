package dingtalk

import (
	"errors"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The test vectors of the protocol notes.
var signVectors = []struct{ secret, timestamp, sign string }{
	{"this is a secret", "1577262236757", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="},
	{"testAppSecret123", "1577262236757", "/u/NmL78bEwbWCrXKtyloL0DktNIZ2Q7oKeLE4xd5wU="},
}

func TestSignVectors(t *testing.T) {
	for _, v := range signVectors {
		if got := Sign(v.secret, v.timestamp); got != v.sign {
			t.Errorf("Sign(%q, %q) = %q, want %q", v.secret, v.timestamp, got, v.sign)
		}
		if !SignMatches(v.secret, v.timestamp, v.sign) {
			t.Errorf("SignMatches rejects the vector for %q", v.secret)
		}
		verifier := NewVerifier(v.secret)
		for range 3 { // a reused HMAC gives the same answer
			if !verifier.Matches(v.timestamp, v.sign) {
				t.Errorf("Verifier rejects the vector for %q", v.secret)
			}
		}
	}
}

func TestSignMatchesOnlyTheExactSign(t *testing.T) {
	v := signVectors[0]
	verifier := NewVerifier(v.secret)
	for name, sign := range map[string]string{
		"other secret's sign":  signVectors[1].sign,
		"URL-encoded":          url.QueryEscape(v.sign),
		"URL-safe base64":      "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA",
		"leading space":        " " + v.sign,
		"trailing newline":     v.sign + "\n",
		"lower-cased":          "djre6qdyvgcqz9z5r2mdun",
		"empty":                "",
		"one character off":    "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CB=",
		"hex of the right MAC": "0c9ac4eaa772546090cfdcf9af6303b8",
	} {
		if SignMatches(v.secret, v.timestamp, sign) {
			t.Errorf("%s: %q accepted", name, sign)
		}
		if verifier.Matches(v.timestamp, sign) {
			t.Errorf("%s: %q accepted by the Verifier", name, sign)
		}
	}
	if SignMatches(v.secret, v.timestamp+"0", v.sign) || verifier.Matches(v.timestamp+"0", v.sign) {
		t.Error("a sign matched another timestamp")
	}
}

func TestVerifierConcurrentUse(t *testing.T) {
	verifier := NewVerifier(signVectors[0].secret)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				ts := strconv.Itoa(1700000000000 + i*1000 + j)
				if !verifier.Matches(ts, Sign(signVectors[0].secret, ts)) || verifier.Matches(ts, signVectors[0].sign) {
					t.Errorf("wrong answer for %s", ts)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestParseTimestamp(t *testing.T) {
	if got, err := ParseTimestamp("1577262236757"); err != nil || got.UnixMilli() != 1577262236757 {
		t.Fatalf("ParseTimestamp = %v, %v", got, err)
	}
	for _, bad := range []string{"", "-1577262236757", "+1577262236757", " 1577262236757", "1577262236757 ",
		"1577262236757.0", "1e12", "0x16f3", "１５７７２６２２３６７５７", "99999999999999999999", "9223372036854775808"} {
		if _, err := ParseTimestamp(bad); !errors.Is(err, ErrMalformedTimestamp) {
			t.Errorf("ParseTimestamp(%q) error = %v, want ErrMalformedTimestamp", bad, err)
		}
	}
}

func TestWindowBoundaries(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	w := Window{MaxAge: time.Hour, MaxFuture: 5 * time.Minute}
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	cases := []struct {
		ts   string
		want error
	}{
		{ms(0), nil},
		{ms(-time.Hour), nil},
		{ms(-time.Hour - time.Millisecond), ErrExpired},
		{ms(5 * time.Minute), nil},
		{ms(5*time.Minute + time.Millisecond), ErrFuture},
		{strconv.FormatInt(now.Unix(), 10), ErrSecondsTimestamp}, // seconds, not milliseconds
		{"0", ErrExpired},
		{"abc", ErrMalformedTimestamp},
	}
	for _, c := range cases {
		if err := w.Check(c.ts, now); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("Check(%s) = %v, want %v", c.ts, err, c.want)
		}
	}
	// Only a timestamp of 10 digits is said to look like seconds; it is
	// still an expired one to whoever counts reasons.
	if err := w.Check("0", now); errors.Is(err, ErrSecondsTimestamp) {
		t.Errorf("Check(0) = %v", err)
	}
	if !errors.Is(ErrSecondsTimestamp, ErrExpired) {
		t.Error("ErrSecondsTimestamp is not an ErrExpired")
	}
}

func BenchmarkSignMatches(b *testing.B) {
	v := signVectors[0]
	b.ReportAllocs()
	for b.Loop() {
		if !SignMatches(v.secret, v.timestamp, v.sign) {
			b.Fatal("vector rejected")
		}
	}
}

func BenchmarkVerifierMatches(b *testing.B) {
	v := signVectors[0]
	verifier := NewVerifier(v.secret)
	b.ReportAllocs()
	for b.Loop() {
		if !verifier.Matches(v.timestamp, v.sign) {
			b.Fatal("vector rejected")
		}
	}
}
