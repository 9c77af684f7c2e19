package envoyfilter

import (
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/apierror"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// failWith answers with the error's status and OpenAI-shaped body, plus
// headers (e.g. Allow), and counts the rejection.
func (f *filter) failWith(err error, headers map[string][]string) api.StatusType {
	e := apierror.From(err)
	f.cfg.metrics.countRejection(e.Status)
	return f.replyWith(e.Status, e.Body(), headers)
}

// replyWith sends the filter's own local reply. It first marks the stream
// (CONTRACTS.md item 4): the HCM applies local_reply_config to every local
// reply, filters' included, and the marker is what its first mapper
// matches to leave this already OpenAI-shaped body alone. Metadata set on
// the worker lands at once; the reply itself is posted, so it comes after.
func (f *filter) replyWith(status int, body []byte, headers map[string][]string) api.StatusType {
	f.repliedLocally = true
	f.callbacks.StreamInfo().DynamicMetadata().Set(protocol.MetadataNamespaceInflow, protocol.MetadataKeyOpenAIReply, true)
	h := map[string][]string{headerContentType: {contentTypeJSON}}
	for k, v := range headers {
		h[k] = v
	}
	f.callbacks.DecoderFilterCallbacks().SendLocalReply(status, string(body), h, 0, "inflow")
	return api.LocalReply
}
