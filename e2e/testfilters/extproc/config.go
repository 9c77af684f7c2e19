package main

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// TypeURL is the ExternalProcessor message this filter's config is.
const TypeURL = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"

const (
	// defaultMessageTimeout is Envoy's message_timeout default.
	defaultMessageTimeout = 200 * time.Millisecond
	// defaultStatusOnError is Envoy's status_on_error default.
	defaultStatusOnError = 500
)

type mode = extprocfilterv3.ProcessingMode_BodySendMode

const (
	modeNone       = extprocfilterv3.ProcessingMode_NONE
	modeBuffered   = extprocfilterv3.ProcessingMode_BUFFERED
	modeFullDuplex = extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED
)

// config is one parsed ExternalProcessor.
type config struct {
	client extprocv3.ExternalProcessorClient
	conn   *grpc.ClientConn

	sendResponseHeaders    bool
	sendRequestTrailers    bool
	requestBody            mode
	responseBody           mode
	messageTimeout         time.Duration
	failureModeAllow       bool
	statusOnError          int
	receiving, forwarding  []string
	disableClearRouteCache bool
	allowContentLength     bool
	disableImmediate       bool

	stats *stats
}

// Destroy implements api.Config.
func (c *config) Destroy() { _ = c.conn.Close() }

type parser struct{}

// supported are the ExternalProcessor fields this client implements.
var supported = map[string]bool{
	"grpc_service": true, "failure_mode_allow": true, "processing_mode": true, "message_timeout": true,
	"stat_prefix": true, "metadata_options": true, "disable_clear_route_cache": true,
	"status_on_error": true, "allow_content_length_header": true, "disable_immediate_response": true,
}

func (parser) Parse(a *anypb.Any, cb api.ConfigCallbackHandler) (interface{}, error) {
	var ep extprocfilterv3.ExternalProcessor
	if err := decodeConfig(a, &ep); err != nil {
		return nil, err
	}
	if err := ep.ValidateAll(); err != nil {
		return nil, fmt.Errorf("ext_proc: %w", err)
	}
	if err := refuseUnsupported(&ep); err != nil {
		return nil, err
	}
	c, err := newConfig(&ep)
	if err != nil {
		return nil, err
	}
	c.stats = defineStats(cb)
	return c, nil
}

func (parser) Merge(parent, _ interface{}) interface{} { return parent }

// decodeConfig reads the plugin_config: TypedStruct{TypeURL, <ExternalProcessor
// as proto3 JSON>} (what the host and xDS YAML carry) or the message itself.
func decodeConfig(a *anypb.Any, ep *extprocfilterv3.ExternalProcessor) error {
	if a.GetTypeUrl() == TypeURL {
		return a.UnmarshalTo(ep)
	}
	var ts xdstype.TypedStruct
	if err := a.UnmarshalTo(&ts); err != nil {
		return fmt.Errorf("ext_proc: plugin_config: want %s or a TypedStruct of it: %w", TypeURL, err)
	}
	if ts.GetTypeUrl() != TypeURL {
		return fmt.Errorf("ext_proc: plugin_config.type_url: want %q, got %q", TypeURL, ts.GetTypeUrl())
	}
	js, err := protojson.Marshal(ts.GetValue())
	if err != nil {
		return fmt.Errorf("ext_proc: %w", err)
	}
	if err := protojson.Unmarshal(js, ep); err != nil {
		return fmt.Errorf("ext_proc: %w", err)
	}
	return nil
}

// refuseUnsupported names every set field this client does not
// implement, as Envoy would reject a config it cannot honour.
func refuseUnsupported(ep *extprocfilterv3.ExternalProcessor) error {
	var bad []string
	ep.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !supported[string(fd.Name())] {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	g := ep.GetGrpcService()
	switch {
	case g == nil:
		bad = append(bad, "grpc_service (required; http_service is not supported)")
	case g.GetGoogleGrpc() == nil:
		bad = append(bad, "grpc_service.envoy_grpc (the host has no clusters: use google_grpc.target_uri)")
	case len(g.GetInitialMetadata()) > 0 || g.GetRetryPolicy() != nil:
		bad = append(bad, "grpc_service.initial_metadata/retry_policy")
	}
	if gg := g.GetGoogleGrpc(); gg != nil && (gg.GetChannelCredentials() != nil || len(gg.GetCallCredentials()) > 0) {
		bad = append(bad, "grpc_service.google_grpc credentials (plain text only)")
	}
	pm := ep.GetProcessingMode()
	if pm.GetRequestHeaderMode() == extprocfilterv3.ProcessingMode_SKIP {
		bad = append(bad, "processing_mode.request_header_mode SKIP")
	}
	for name, m := range map[string]mode{"request_body_mode": pm.GetRequestBodyMode(), "response_body_mode": pm.GetResponseBodyMode()} {
		if m != modeNone && m != modeBuffered && !(m == modeFullDuplex && name == "request_body_mode") {
			bad = append(bad, "processing_mode."+name+" "+m.String())
		}
	}
	if pm.GetResponseTrailerMode() == extprocfilterv3.ProcessingMode_SEND {
		bad = append(bad, "processing_mode.response_trailer_mode SEND")
	}
	mo := ep.GetMetadataOptions()
	if mo.GetClusterMetadataForwardingNamespaces() != nil || len(mo.GetForwardingNamespaces().GetTyped()) > 0 ||
		len(mo.GetReceivingNamespaces().GetTyped()) > 0 {
		bad = append(bad, "metadata_options typed or cluster namespaces")
	}
	if len(bad) > 0 {
		return fmt.Errorf("ext_proc: this client does not implement: %s", strings.Join(bad, ", "))
	}
	// Envoy's own checks (config.cc verifyProcessingModeConfig).
	if pm.GetRequestBodyMode() == modeFullDuplex && pm.GetRequestTrailerMode() != extprocfilterv3.ProcessingMode_SEND {
		return errors.New("ext_proc: If the ext_proc filter has the request_body_mode set to FULL_DUPLEX_STREAMED, " +
			"then the request_trailer_mode has to be set to SEND")
	}
	return nil
}

func newConfig(ep *extprocfilterv3.ExternalProcessor) (*config, error) {
	pm := ep.GetProcessingMode()
	c := &config{
		sendResponseHeaders:    pm.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP,
		sendRequestTrailers:    pm.GetRequestTrailerMode() == extprocfilterv3.ProcessingMode_SEND,
		requestBody:            pm.GetRequestBodyMode(),
		responseBody:           pm.GetResponseBodyMode(),
		messageTimeout:         defaultMessageTimeout,
		failureModeAllow:       ep.GetFailureModeAllow(),
		statusOnError:          defaultStatusOnError,
		receiving:              ep.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(),
		forwarding:             ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(),
		disableClearRouteCache: ep.GetDisableClearRouteCache(),
		allowContentLength:     ep.GetAllowContentLengthHeader(),
		disableImmediate:       ep.GetDisableImmediateResponse(),
	}
	if t := ep.GetMessageTimeout(); t != nil {
		c.messageTimeout = t.AsDuration()
	}
	if s := ep.GetStatusOnError(); s != nil && s.GetCode() != 0 {
		c.statusOnError = int(s.GetCode())
	}
	// Envoy's envoy_grpc client receives messages of any size by default
	// (max_receive_message_length 0); grpc-go's would stop at 4 MiB.
	conn, err := grpc.NewClient(ep.GetGrpcService().GetGoogleGrpc().GetTargetUri(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, fmt.Errorf("ext_proc: grpc_service.google_grpc.target_uri: %w", err)
	}
	c.conn, c.client = conn, extprocv3.NewExternalProcessorClient(conn)
	return c, nil
}

// stats are Envoy's ext_proc stats that the tests read (the filter's
// proof of life, as Envoy shows http.<prefix>.ext_proc.*).
type stats struct {
	streamsStarted, msgsSent, msgsReceived, spurious, streamsFailed, streamsClosed,
	failureModeAllowed, messageTimeouts, rejectedMutations, immediateResponses api.CounterMetric
}

func defineStats(cb api.ConfigCallbackHandler) *stats {
	if cb == nil {
		return &stats{}
	}
	d := func(n string) api.CounterMetric { return cb.DefineCounterMetric("ext_proc." + n) }
	return &stats{
		streamsStarted: d("streams_started"), msgsSent: d("stream_msgs_sent"), msgsReceived: d("stream_msgs_received"),
		spurious: d("spurious_msgs_received"), streamsFailed: d("streams_failed"), streamsClosed: d("streams_closed"),
		failureModeAllowed: d("failure_mode_allowed"), messageTimeouts: d("message_timeouts"),
		rejectedMutations: d("rejected_header_mutations"), immediateResponses: d("immediate_responses_sent"),
	}
}

func inc(c api.CounterMetric) {
	if c != nil {
		c.Increment(1)
	}
}
