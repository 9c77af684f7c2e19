package envoyfilter

import (
	"strings"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/router"
)

// setDestination hands the pick to Envoy in the form the pool's cluster
// reads (CONTRACTS.md item 2). The header always carries the primary alone
// (the endpoint-picker protocol's header, and what access logs show). The
// metadata carries:
//   - override_host: the ordered list "primary,fallback,...", which Envoy's
//     OverrideHost policy walks, one entry per attempt, skipping entries
//     that are not members of the pool's cluster;
//   - original_dst: the primary alone, the only form ORIGINAL_DST parses
//     (a list there counts original_dst_host_invalid and is ignored).
//
// Nothing the client sent survives: the header is overwritten (Set
// replaces every copy) or removed, and the metadata is only ever written
// here, from the pool's own endpoints.
func (f *filter) setDestination(h api.RequestHeaderMap, d *router.Decision) {
	if len(d.Endpoints) == 0 {
		h.Del(protocol.HeaderDestination)
		return
	}
	h.Set(protocol.HeaderDestination, d.Endpoints[0].Addr)
	value := d.Endpoints[0].Addr
	if d.Model.Destination == config.DestinationOverrideHost {
		value = joinAddrs(d.Endpoints)
	}
	f.callbacks.StreamInfo().DynamicMetadata().Set(protocol.MetadataNamespaceLB, protocol.MetadataKeyDestination, value)
}

// joinAddrs is the OverrideHost list form, "ip:port,ip:port".
func joinAddrs(eps []*pool.Endpoint) string {
	if len(eps) == 1 {
		return eps[0].Addr
	}
	n := len(eps) - 1
	for _, ep := range eps {
		n += len(ep.Addr)
	}
	var b strings.Builder
	b.Grow(n)
	for i, ep := range eps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ep.Addr)
	}
	return b.String()
}
