package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// eventOptions are the flags of `caddy dingtalk event`.
type eventOptions struct {
	URL       string
	TokenEnv  string // --token-env: the variable holding the subscription's token
	AESKeyEnv string // --aes-key-env: the variable holding its aes_key
	OwnerKey  string // --owner-key: the AppKey, suite key or corp id
	Type      string // --type: the EventType
	JSONFile  string // --json: the event's other fields, a JSON object
	EventID   string // --event-id: the eventId; default a fresh one (none for URL checks)
	Timeout   time.Duration
}

// runEvent encrypts and signs an event as DingTalk pushes it, posts it to
// the gateway, and prints the status and the decrypted answer. It returns
// an error unless the gateway answered the encrypted success.
func runEvent(ctx context.Context, opts eventOptions, stdout, stderr io.Writer) error {
	target, err := parseURLFlag(opts.URL)
	if err != nil {
		return err
	}
	token, err := envSecret("--token-env", opts.TokenEnv)
	if err != nil {
		return err
	}
	aesKey, err := envSecret("--aes-key-env", opts.AESKeyEnv)
	if err != nil {
		return err
	}
	if opts.Type == "" {
		return errors.New("--type is required: the EventType, such as check_url or user_add_org")
	}
	crypto, err := event.New(token, aesKey, opts.OwnerKey)
	if err != nil {
		return fmt.Errorf("%v (see --token-env, --aes-key-env, --owner-key)", err)
	}
	plaintext, id, err := opts.plaintext()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sending a %s event%s to %s\n", opts.Type, id, target.Redacted())

	req, err := dingtalktest.NewEventRequest(target.String(), crypto, plaintext, time.Now())
	if err != nil {
		return err
	}
	timeout := cmp.Or(opts.Timeout, defaultSendTimeout)
	resp, answer, err := exchange(ctx, req, target, timeout)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, resp.Status)
	if resp.StatusCode != http.StatusOK {
		_ = printBody(stdout, answer)
		return errors.New("the gateway answered " + resp.Status + eventStatusHint(resp.StatusCode))
	}
	decrypted, err := crypto.OpenAnswer(answer)
	if err != nil {
		_ = printBody(stdout, answer)
		return fmt.Errorf("the answer is not an envelope signed and encrypted with this subscription: %v", err)
	}
	fmt.Fprintf(stdout, "decrypted answer: %s\n", decrypted)
	if !event.IsSuccess(decrypted) {
		return errors.New(`the decrypted answer is not "success": DingTalk would deliver the event again`)
	}
	return nil
}

// plaintext is the event's JSON: the --json object (or an empty one) with
// EventType set, and an eventId unless it is a URL check or has one. It
// also returns a note naming the id, for the message on stderr.
func (opts eventOptions) plaintext() ([]byte, string, error) {
	fields := map[string]any{}
	if opts.JSONFile != "" {
		data, err := os.ReadFile(opts.JSONFile)
		if err != nil {
			return nil, "", fmt.Errorf("--json: %w", err)
		}
		if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
			return nil, "", fmt.Errorf("--json: %s is not a JSON object", opts.JSONFile)
		}
	}
	fields["EventType"] = opts.Type
	if opts.EventID != "" {
		fields["eventId"] = opts.EventID
	}
	check := (event.Event{Type: opts.Type}).IsHandshake()
	_, hasID := fields["eventId"]
	if !check && !hasID {
		fields["eventId"] = dingtalktest.NewMsgID()
	}
	if _, ok := fields["TimeStamp"]; !ok && !check {
		fields["TimeStamp"] = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	plaintext, err := json.Marshal(fields)
	if err != nil {
		return nil, "", err
	}
	note := ""
	if id, ok := fields["eventId"]; ok {
		note = fmt.Sprintf(", eventId %v,", id)
	}
	return plaintext, note, nil
}

// envSecret reads a secret from the environment variable name, given with
// flag; its errors name the flag and the variable, never the value.
func envSecret(flag, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%s is required: the name of the environment variable that holds it (secrets stay out of shell history)", flag)
	}
	value, ok := os.LookupEnv(name)
	if !ok || value == "" {
		return "", fmt.Errorf("%s: environment variable %s is not set or empty", flag, name)
	}
	return value, nil
}

// eventStatusHint names the likely cause of the dingtalk_event handler's rejections.
func eventStatusHint(code int) string {
	switch code {
	case http.StatusUnauthorized:
		return " (signature or timestamp refused: is the token the gateway's, and this machine's clock right? Caddy's log names the reason)"
	case http.StatusBadRequest:
		return " (ciphertext or event refused: is the aes_key the gateway's?)"
	case http.StatusForbidden:
		return " (the owner key is not the gateway's owner_key: see --owner-key)"
	}
	if code >= 500 {
		return " (the backend behind the gateway failed: DingTalk would deliver the event again)"
	}
	return ""
}
