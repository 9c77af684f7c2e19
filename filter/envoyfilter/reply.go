package envoyfilter

import (
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/decide"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// respond sends the filter's own local reply and counts it when it is a
// rejection. It first marks the stream (CONTRACTS.md item 4): the HCM
// applies local_reply_config to every local reply, filters' included, and
// the marker is what its first mapper matches to leave this already
// OpenAI-shaped body alone. Metadata set on the worker lands at once; the
// reply itself is posted, so it comes after.
func (f *filter) respond(r decide.Response) api.StatusType {
	f.cfg.metrics.countRejection(r.Status)
	f.repliedLocally = true
	f.callbacks.StreamInfo().DynamicMetadata().Set(protocol.MetadataNamespaceInflow, protocol.MetadataKeyOpenAIReply, true)
	h := map[string][]string{decide.HeaderContentType: {decide.ContentTypeJSON}}
	if r.Allow != "" {
		h[decide.HeaderAllow] = []string{r.Allow}
	}
	f.callbacks.DecoderFilterCallbacks().SendLocalReply(r.Status, string(r.Body), h, 0, "inflow")
	return api.LocalReply
}
