package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// signOptions are the flags of `caddy dingtalk sign`.
type signOptions struct {
	Secret    secretSource
	Timestamp string // milliseconds since the epoch; empty: now
	URL       string // when set, also print a curl command posting to it
}

// runSign prints the timestamp and sign headers DingTalk would send, and
// with a URL a curl command that posts a body with them.
func runSign(opts signOptions, stdout, stderr io.Writer) error {
	secret, err := opts.Secret.resolve()
	if err != nil {
		return err
	}
	var target string
	if opts.URL != "" {
		u, err := parseURLFlag(opts.URL)
		if err != nil {
			return err
		}
		target = u.String()
	}
	now := time.Now()
	ts := opts.Timestamp
	if ts == "" {
		ts = strconv.FormatInt(now.UnixMilli(), 10)
	}
	// The sign covers the header text as given, so a given timestamp is
	// signed verbatim, not re-formatted; it only has to be a valid one.
	if err := checkTimestamp(ts, now, stderr); err != nil {
		return err
	}

	sign := dingtalk.Sign(secret, ts)
	fmt.Fprintf(stdout, "%s: %s\n%s: %s\n", dingtalk.HeaderTimestamp, ts, dingtalk.HeaderSign, sign)
	if target == "" {
		return nil
	}
	fmt.Fprintf(stdout, "\ncurl -sS %s \\\n  -H %s \\\n  -H %s \\\n  -H %s \\\n  --data-binary @body.json\n",
		shellQuote(target),
		shellQuote("Content-Type: application/json; charset=utf-8"),
		shellQuote(dingtalk.HeaderTimestamp+": "+ts),
		shellQuote(dingtalk.HeaderSign+": "+sign))
	fmt.Fprintln(stderr, "body.json: the callback's JSON; @- reads it from stdin instead")
	return nil
}

// shellQuote quotes s for POSIX shells: inside single quotes only the single
// quote itself needs care.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shortDuration writes d as a Caddyfile would: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
