package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// secretSource is where a `caddy dingtalk` command reads the robot's
// AppSecret from: --secret, or --secret-env to keep it out of shell history
// and process listings. Its errors name the flag or variable, never the value.
type secretSource struct {
	Value string // --secret
	Env   string // --secret-env: the name of an environment variable
}

func (s secretSource) resolve() (string, error) {
	switch {
	case s.Value != "" && s.Env != "":
		return "", errors.New("give either --secret or --secret-env, not both")
	case s.Value != "":
		return s.Value, nil
	case s.Env != "":
		value, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("--secret-env: environment variable %s is not set", s.Env)
		}
		if value == "" {
			return "", fmt.Errorf("--secret-env: environment variable %s is empty", s.Env)
		}
		return value, nil
	}
	return "", errors.New("no secret: give the robot's AppSecret with --secret-env NAME (keeps it out of shell history) or --secret")
}

// parseURLFlag checks --url: an absolute http(s) URL, the robot's message
// receive address.
func parseURLFlag(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("--url is required: the gateway's callback URL, like http://localhost:8080/robot")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q is not an absolute http(s) URL, like http://localhost:8080/robot", raw)
	}
	return u, nil
}

// checkTimestamp checks a --timestamp, which is signed as given: an error
// for one that is not a count of milliseconds, a note on stderr for one that
// a gateway with the default window rejects, saying why.
func checkTimestamp(ts string, now time.Time, stderr io.Writer) error {
	switch err := (dingtalk.Window{MaxAge: dingtalk.DefaultMaxAge, MaxFuture: dingtalk.DefaultMaxFuture}).Check(ts, now); {
	case errors.Is(err, dingtalk.ErrMalformedTimestamp):
		return fmt.Errorf("--timestamp %q is not a decimal count of milliseconds since the epoch, like 1577262236757", ts)
	case errors.Is(err, dingtalk.ErrSecondsTimestamp):
		fmt.Fprintf(stderr, "note: timestamp %s has 10 digits, like seconds since the epoch: DingTalk's are milliseconds (13 digits), and a gateway rejects it as expired\n", ts)
	case errors.Is(err, dingtalk.ErrExpired):
		fmt.Fprintf(stderr, "note: timestamp %s is more than %s old: a gateway with the default max_age rejects it\n", ts, shortDuration(dingtalk.DefaultMaxAge))
	case errors.Is(err, dingtalk.ErrFuture):
		fmt.Fprintf(stderr, "note: timestamp %s is more than %s ahead: a gateway with the default max_future rejects it\n", ts, shortDuration(dingtalk.DefaultMaxFuture))
	}
	return nil
}
