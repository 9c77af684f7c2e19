package spec

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// BaseURL is a backend's base URL split into what Envoy needs.
type BaseURL struct {
	TLS  bool
	Host string // hostname or IP, no port
	Port uint32
	// PathPrefix replaces the client's "/v1/" prefix; empty when the base
	// path is "", "/" or "/v1" and client paths pass through unchanged.
	PathPrefix string
}

// ParseBaseURL checks an http(s) base URL such as https://api.openai.com/v1
// or https://example.com/openai/v1.
func ParseBaseURL(raw string) (BaseURL, error) {
	if raw == "" {
		return BaseURL{}, errors.New("must not be empty (e.g. https://api.openai.com/v1)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return BaseURL{}, fmt.Errorf("%q is not a URL", raw)
	}
	var b BaseURL
	switch u.Scheme {
	case "https":
		b.TLS, b.Port = true, 443
	case "http":
		b.Port = 80
	default:
		return BaseURL{}, fmt.Errorf("%q: scheme must be http or https", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return BaseURL{}, fmt.Errorf("%q: must not carry user info, a query or a fragment", raw)
	}
	b.Host = u.Hostname()
	if b.Host == "" {
		return BaseURL{}, fmt.Errorf("%q: host is missing", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return BaseURL{}, fmt.Errorf("%q: bad port %q", raw, p)
		}
		b.Port = uint32(n)
	}
	switch p := strings.TrimSuffix(u.Path, "/"); p {
	case "", "/v1":
	default:
		b.PathPrefix = p + "/"
	}
	return b, nil
}

// Authority is host[:port] as the Host header should carry it: the port is
// left out when it is the scheme's default.
func (b BaseURL) Authority() string {
	if (b.TLS && b.Port == 443) || (!b.TLS && b.Port == 80) {
		if strings.Contains(b.Host, ":") { // IPv6 literal
			return "[" + b.Host + "]"
		}
		return b.Host
	}
	return net.JoinHostPort(b.Host, strconv.FormatUint(uint64(b.Port), 10))
}
