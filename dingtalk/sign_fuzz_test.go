package dingtalk_test

import (
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// FuzzSignMatches checks that SignMatches and Verifier.Matches, which the
// handler uses, accept exactly Sign's output: nothing else, whatever the
// secret, timestamp and sign.
func FuzzSignMatches(f *testing.F) {
	const secret, ts, sign = "this is a secret", "1577262236757", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="
	for _, s := range []string{sign, url.QueryEscape(sign), sign[:43], " " + sign, sign + "\n", "", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CB="} {
		f.Add(secret, ts, s)
	}
	f.Add("", "", "")
	f.Add("testAppSecret123", ts, "/u/NmL78bEwbWCrXKtyloL0DktNIZ2Q7oKeLE4xd5wU=")
	f.Add(secret, ts+"\n"+secret, sign)
	f.Fuzz(func(t *testing.T, secret, ts, sign string) {
		want := dingtalk.Sign(secret, ts)
		if got := dingtalk.SignMatches(secret, ts, sign); got != (sign == want) {
			t.Fatalf("SignMatches(%q, %q, %q) = %v; Sign gives %q", secret, ts, sign, got, want)
		}
		if !dingtalk.SignMatches(secret, ts, want) {
			t.Fatalf("SignMatches refuses Sign's own output for %q, %q", secret, ts)
		}
		v := dingtalk.NewVerifier(secret)
		if got := v.Matches(ts, sign); got != (sign == want) {
			t.Fatalf("Verifier.Matches(%q, %q) for secret %q = %v; Sign gives %q", ts, sign, secret, got, want)
		}
		if !v.Matches(ts, want) || !v.Matches(ts, want) { // the second time with a state from the pool
			t.Fatalf("Verifier.Matches refuses Sign's own output for %q, %q", secret, ts)
		}
	})
}

// FuzzWindowCheck checks Window.Check against a plain reading of the rule:
// a timestamp passes only when it is a decimal millisecond count of at most
// 15 digits within [now-MaxAge, now+MaxFuture], and every such one passes.
func FuzzWindowCheck(f *testing.F) {
	const now = 1_800_000_000_000
	for _, ts := range []string{"1800000000000", "1799996400000", "1799996399999", "1800000300000", "1800000300001",
		"1800000000", "-1800000000000", "+1800000000000", " 1800000000000", "1.8e12", "１８００００００００００００",
		"999999999999999", "9999999999999999", "99999999999999999999", "0001800000000000", "0", ""} {
		f.Add(ts, int64(now), uint32(time.Hour/time.Millisecond), uint32(5*time.Minute/time.Millisecond))
	}
	f.Fuzz(func(t *testing.T, ts string, nowMS int64, maxAgeMS, maxFutureMS uint32) {
		nowMS = min(max(nowMS, 0), 1e15) // a clock between 1970 and the year 33658
		w := dingtalk.Window{MaxAge: time.Duration(maxAgeMS) * time.Millisecond, MaxFuture: time.Duration(maxFutureMS) * time.Millisecond}
		err := w.Check(ts, time.UnixMilli(nowMS))

		digits := ts != "" && len(ts) <= 15
		for _, c := range []byte(ts) {
			digits = digits && '0' <= c && c <= '9'
		}
		ms, parseErr := strconv.ParseInt(ts, 10, 64)
		switch {
		case !digits || parseErr != nil:
			if !errors.Is(err, dingtalk.ErrMalformedTimestamp) {
				t.Fatalf("Check(%q) = %v, want ErrMalformedTimestamp", ts, err)
			}
		case ms < nowMS-int64(maxAgeMS):
			if !errors.Is(err, dingtalk.ErrExpired) {
				t.Fatalf("Check(%q) at %d = %v, want ErrExpired", ts, nowMS, err)
			}
		case ms > nowMS+int64(maxFutureMS):
			if !errors.Is(err, dingtalk.ErrFuture) {
				t.Fatalf("Check(%q) at %d = %v, want ErrFuture", ts, nowMS, err)
			}
		case err != nil:
			t.Fatalf("Check(%q) at %d refused a timestamp in the window: %v", ts, nowMS, err)
		}
	})
}
