package sharing

import (
	"net"
	"net/http"
	"time"
)

// NewTransport is how a replica dials its relay, and a relay its peers:
// HTTP/2 without TLS (prior knowledge), one connection per relay carrying
// every pool's stream, and pings so a relay that went away without closing
// is noticed within seconds.
func NewTransport() *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Proxy:              nil,
		DialContext:        (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		Protocols:          &protocols,
		DisableCompression: true,
		HTTP2:              &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: 2 * time.Second},
	}
}
