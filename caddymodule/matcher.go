package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types/ref"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(MatchDingTalk{})
}

// MatchDingTalk matches requests that carry a DingTalk callback the
// dingtalk handler verified earlier in the same route, by the message's
// content. A request the handler did not verify never matches, whatever the
// conditions. Every condition given must hold; the values of one condition
// are alternatives.
type MatchDingTalk struct {
	// A regular expression the message's text must match. The text is
	// trimmed first (in groups DingTalk leaves a space where the @mention
	// was); messages other than text have an empty text. Capture groups are
	// published as `{http.regexp.<name>.1}`, ... with the name of the named
	// matcher, as Caddy's own regexp matchers do.
	Text *caddyhttp.MatchRegexp `json:"text,omitempty"`

	// The message types (msgtype) that match, such as text, picture or richText.
	MsgTypes []string `json:"msgtype,omitempty"`

	// The kind of conversation that matches: single (one-to-one) or group.
	Conversation string `json:"conversation,omitempty"`

	// The conversations (conversationId) that match.
	ConversationIDs []string `json:"conversation_id,omitempty"`

	// The senders that match, by staff id (senderStaffId). External users
	// have no staff id and never match.
	Senders []string `json:"sender,omitempty"`

	// The bots that match, by the name the dingtalk handler knows them by
	// (`default` for its `secret` shorthand).
	Bots []string `json:"bot,omitempty"`

	// Matches only messages from an administrator (isAdmin).
	Admin bool `json:"admin,omitempty"`

	// Matches only messages in which the robot is @-mentioned (isInAtList).
	Mentioned bool `json:"mentioned,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (MatchDingTalk) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.dingtalk",
		New: func() caddy.Module { return new(MatchDingTalk) },
	}
}

// Provision compiles the text's regular expression, once.
func (m *MatchDingTalk) Provision(ctx caddy.Context) error {
	if m.Text == nil {
		return nil
	}
	return m.Text.Provision(ctx)
}

// Validate checks the conditions' values.
func (m *MatchDingTalk) Validate() error {
	if m.Text != nil {
		if err := m.Text.Validate(); err != nil {
			return fmt.Errorf("dingtalk matcher: %v", err)
		}
	}
	if m.Conversation != "" {
		if err := checkConversation(m.Conversation); err != nil {
			return fmt.Errorf("dingtalk matcher: %v", err)
		}
	}
	lists := []struct {
		name   string
		values []string
	}{{"msgtype", m.MsgTypes}, {"conversation_id", m.ConversationIDs}, {"sender", m.Senders}, {"bot", m.Bots}}
	for _, l := range lists {
		if slices.Contains(l.values, "") {
			return fmt.Errorf("dingtalk matcher: %s has an empty value", l.name)
		}
	}
	return nil
}

// MatchWithError reports whether r carries a verified callback that meets
// every condition. The text is tested last, so that captures are published
// only for a request that matches.
func (m *MatchDingTalk) MatchWithError(r *http.Request) (bool, error) {
	v, ok := VerifiedFrom(r.Context())
	if !ok {
		return false, nil
	}
	msg := v.Message
	switch {
	case len(m.MsgTypes) > 0 && !slices.Contains(m.MsgTypes, msg.MsgType),
		m.Conversation != "" && m.Conversation != msg.Conversation(),
		len(m.ConversationIDs) > 0 && !slices.Contains(m.ConversationIDs, msg.ConversationID),
		len(m.Senders) > 0 && !slices.Contains(m.Senders, msg.SenderStaffID), // never "": Validate refuses it
		len(m.Bots) > 0 && !slices.Contains(m.Bots, v.Bot),
		m.Admin && !msg.IsAdmin,
		m.Mentioned && !msg.IsInAtList:
		return false, nil
	}
	if m.Text == nil {
		return true, nil
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	return m.Text.Match(msg.TrimmedText(), repl), nil
}

// set sets the condition that the Caddyfile and CEL both call key from its
// values. regexpName names the text's captures unless the values name them.
func (m *MatchDingTalk) set(key string, values []string, regexpName string) error {
	switch key {
	case "text":
		switch len(values) {
		case 1:
			m.Text = &caddyhttp.MatchRegexp{Name: regexpName, Pattern: values[0]}
		case 2:
			m.Text = &caddyhttp.MatchRegexp{Name: values[0], Pattern: values[1]}
		default:
			return errors.New("text takes a regular expression, optionally preceded by a name for its captures")
		}
		// Provision compiles it again; this reports a bad pattern when the
		// config is adapted, with its location.
		if _, err := regexp.Compile(m.Text.Pattern); err != nil {
			return fmt.Errorf("text: %v", err)
		}
	case "msgtype":
		return atLeastOne(key, values, &m.MsgTypes)
	case "conversation":
		if len(values) != 1 {
			return errors.New("conversation takes one value: single or group")
		}
		m.Conversation = values[0]
		return checkConversation(m.Conversation)
	case "conversation_id":
		return atLeastOne(key, values, &m.ConversationIDs)
	case "sender":
		return atLeastOne(key, values, &m.Senders)
	case "bot":
		return atLeastOne(key, values, &m.Bots)
	case "admin":
		m.Admin = true
		return noValues(key, values)
	case "mentioned":
		m.Mentioned = true
		return noValues(key, values)
	default:
		return fmt.Errorf("unrecognized condition %q", key)
	}
	return nil
}

// atLeastOne sets *dst to values, which must not be empty.
func atLeastOne(key string, values []string, dst *[]string) error {
	if len(values) == 0 || slices.Contains(values, "") {
		return fmt.Errorf("%s takes one or more non-empty values", key)
	}
	*dst = values
	return nil
}

func noValues(key string, values []string) error {
	if len(values) != 0 {
		return fmt.Errorf("%s takes no value", key)
	}
	return nil
}

func checkConversation(value string) error {
	if value != "single" && value != "group" {
		return fmt.Errorf("conversation is single or group, not %q", value)
	}
	return nil
}

// CELLibrary makes the matcher available in CEL expressions as
// dingtalk({...}), a map with the Caddyfile's condition names as keys and a
// string or a list of strings as values; admin and mentioned take 'true':
//
//	expression dingtalk({'text': '^/deploy', 'sender': ['user1', 'user2']}) || dingtalk({'admin': 'true'})
func (MatchDingTalk) CELLibrary(ctx caddy.Context) (cel.Library, error) {
	return caddyhttp.CELMatcherImpl(
		"dingtalk",
		"dingtalk_request_map",
		[]*cel.Type{caddyhttp.CELTypeJSON},
		func(data ref.Val) (caddyhttp.RequestMatcherWithError, error) {
			conditions, err := caddyhttp.CELValueToMapStrList(data)
			if err != nil {
				return nil, err
			}
			name, _ := ctx.Value(caddyhttp.MatcherNameCtxKey).(string)
			m := new(MatchDingTalk)
			for _, key := range slices.Sorted(maps.Keys(conditions)) {
				values := conditions[key]
				if key == "admin" || key == "mentioned" {
					if len(values) != 1 || values[0] != "true" {
						return nil, fmt.Errorf("dingtalk matcher: write '%s': 'true' (negate the call for the opposite)", key)
					}
					values = nil
				}
				if err := m.set(key, values, name); err != nil {
					return nil, fmt.Errorf("dingtalk matcher: %v", err)
				}
			}
			if err := m.Provision(ctx); err != nil {
				return nil, err
			}
			return m, m.Validate()
		},
	)
}

// Interface guards
var (
	_ caddy.Provisioner                 = (*MatchDingTalk)(nil)
	_ caddy.Validator                   = (*MatchDingTalk)(nil)
	_ caddyhttp.RequestMatcherWithError = (*MatchDingTalk)(nil)
	_ caddyhttp.CELLibraryProducer      = (*MatchDingTalk)(nil)
)
