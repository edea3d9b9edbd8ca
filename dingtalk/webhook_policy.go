package dingtalk

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultWebhookHost is the host of DingTalk's sessionWebhook URLs, the only
// host a zero WebhookPolicy allows.
const DefaultWebhookHost = "oapi.dingtalk.com"

// ErrWebhookNotAllowed wraps every reason WebhookPolicy.Check refuses a URL.
// Like every error of the sessionWebhook client, it never contains the URL's
// query, whose session parameter is a credential.
var ErrWebhookNotAllowed = errors.New("sessionWebhook URL refused")

// redacted replaces secrets in URLs shown in logs and errors.
const redacted = "REDACTED"

// WebhookPolicy decides which sessionWebhook URLs may be contacted. The URL
// comes from the unsigned callback body, so without this check a forged body
// could make the server POST anywhere (SSRF).
type WebhookPolicy struct {
	// AllowedHosts lists the hosts that may be contacted, each a bare host
	// name, or a loopback host with a port ("127.0.0.1:8080", "localhost:8080",
	// "[::1]:8080") for tests and local relays. Empty means DefaultWebhookHost
	// alone; a non-empty list replaces it. NewWebhookPolicy validates entries;
	// Check stays safe with unvalidated ones, as it only ever matches a URL
	// host literally and allows a port only on a loopback host.
	AllowedHosts []string
}

// NewWebhookPolicy returns a policy allowing hosts, after lower-casing them
// and rejecting entries that are not a bare host name or a loopback
// host:port: a scheme, path, userinfo or a port on another host is a mistake
// Check would silently never match.
func NewWebhookPolicy(hosts []string) (WebhookPolicy, error) {
	var p WebhookPolicy
	for _, entry := range hosts {
		host := strings.ToLower(entry)
		// Parsing the entry as a URL's authority applies exactly the rules Check does.
		u, err := parseWebhookURL("https://" + host + "/")
		switch {
		case err != nil || u.Host != host:
			return WebhookPolicy{}, fmt.Errorf("allowed host %q is not a host name or a loopback host:port", entry)
		case u.Port() != "" && !IsLoopback(u.Hostname()):
			return WebhookPolicy{}, fmt.Errorf("allowed host %q has a port, which only a loopback host may have", entry)
		}
		p.AllowedHosts = append(p.AllowedHosts, host)
	}
	return p, nil
}

// Check parses raw and returns it when it may be contacted: scheme https,
// no userinfo, no fragment, and a host that equals an allowed host (ASCII,
// case-insensitively) with no explicit port. A loopback host allowed with a
// port is also accepted over plain http, with exactly that port. Errors wrap
// ErrWebhookNotAllowed and never contain the URL's query.
func (p WebhookPolicy) Check(raw string) (*url.URL, error) {
	u, err := parseWebhookURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebhookNotAllowed, err)
	}
	// Every byte is ASCII by now, so ToLower is the ASCII fold. EqualFold
	// would not do: it folds Unicode, e.g. the Kelvin sign to "k".
	host := strings.ToLower(u.Host)
	hasPort := u.Port() != ""
	switch {
	case !p.allows(host):
		return nil, fmt.Errorf("%w: host %q is not allowed", ErrWebhookNotAllowed, u.Host)
	case hasPort && !IsLoopback(u.Hostname()):
		return nil, fmt.Errorf("%w: a port is allowed only on a loopback host, not %q", ErrWebhookNotAllowed, u.Host)
	case u.Scheme == "http" && !hasPort:
		return nil, fmt.Errorf("%w: plain http is allowed only to a loopback host:port, not %q", ErrWebhookNotAllowed, u.Host)
	}
	u.Host = host
	return u, nil
}

// allows reports whether host (lower case) is literally one of the allowed hosts.
func (p WebhookPolicy) allows(host string) bool {
	if len(p.AllowedHosts) == 0 {
		return host == DefaultWebhookHost
	}
	for _, allowed := range p.AllowedHosts {
		if strings.ToLower(allowed) == host {
			return true
		}
	}
	return false
}

// parseWebhookURL parses raw and refuses every shape that different parsers
// could read as different hosts, or that hides a host somewhere unexpected.
// It does not consult a policy.
func parseWebhookURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c <= ' ' || c >= 0x7f:
			// Also rules out IDN look-alikes: allowed hosts are ASCII.
			return nil, errors.New("URL contains whitespace, a control or a non-ASCII character")
		case c == '\\':
			// Browsers and some libraries read a backslash as a slash.
			return nil, errors.New("URL contains a backslash")
		case c == '#':
			return nil, errors.New("URL has a fragment")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The *url.Error repeats the whole URL, query included; keep only the reason.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("malformed URL: %v", err)
	}
	switch {
	case u.Scheme == "":
		return nil, errors.New("URL has no scheme")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("scheme %q is not allowed", u.Scheme)
	case u.Opaque != "":
		return nil, errors.New("URL has no // after the scheme")
	case u.User != nil:
		return nil, errors.New("URL has userinfo")
	case u.Host == "":
		return nil, errors.New("URL has no host")
	case strings.HasPrefix(u.Path, "//"):
		// "//host/..." as a path is read as a host by some servers and proxies.
		return nil, errors.New("URL path starts with //")
	}
	return u, checkHostSyntax(u.Host)
}

// checkHostSyntax accepts a DNS name or an IP address, with an optional
// canonical port.
func checkHostSyntax(hostport string) error {
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i > strings.LastIndexByte(hostport, ']') {
		host, port = hostport[:i], hostport[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Errorf("host %q has an invalid port", hostport)
		}
	}
	switch {
	case strings.ContainsFunc(host, func(r rune) bool { return r == '%' || r >= utf8.RuneSelf }):
		// net/url decodes %-escapes of non-ASCII bytes in hosts (the URL
		// itself is ASCII by now) and keeps IPv6 zones ("%25eth0" as "%eth0").
		return errors.New("host is percent-encoded or has an IPv6 zone")
	case strings.HasPrefix(host, "["):
		if !strings.HasSuffix(host, "]") || net.ParseIP(host[1:len(host)-1]) == nil {
			return fmt.Errorf("host %q is not a valid IPv6 address", hostport)
		}
	case strings.HasSuffix(host, "."):
		// A trailing dot names the same DNS host but defeats literal matching.
		return fmt.Errorf("host %q ends with a dot", hostport)
	case !isHostName(host):
		return fmt.Errorf("host %q is not a valid host name", hostport)
	}
	return nil
}

// isHostName reports whether name is dot-separated labels of ASCII letters,
// digits and inner hyphens. IPv4 addresses pass too.
func isHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// IsLoopback reports whether host (without port or brackets) is localhost or
// a loopback IP address.
func IsLoopback(host string) bool {
	if strings.ToLower(host) == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RedactWebhook returns raw for logs: every query value (DingTalk's session
// token is one), any userinfo and any fragment replaced by REDACTED. A string
// that does not parse as a URL gives a fixed placeholder.
func RedactWebhook(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = redacted, ""
	}
	// Rewriting the raw query, rather than re-encoding u.Query(), keeps
	// parameters that do not decode, which could hold the token too.
	params := strings.Split(u.RawQuery, "&")
	for i, param := range params {
		if key, _, ok := strings.Cut(param, "="); ok {
			params[i] = key + "=" + redacted
		} else if param != "" {
			params[i] = redacted // a bare parameter is all value as far as we know
		}
	}
	u.RawQuery = strings.Join(params, "&")
	return u.String()
}
