package e2e

import (
	"net"
	"net/http"
	"path/filepath"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// splitPicker answers every request's headers with a destination header
// naming one endpoint and envoy.lb metadata naming another, so a test can
// see which of the two the proxy honoured.
type splitPicker struct {
	extprocv3.UnimplementedExternalProcessorServer
	header, metadata string
}

func (p *splitPicker) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{protocol.MetadataNamespaceLB: map[string]any{protocol.MetadataKeyDestination: p.metadata}})
	return s.Send(&extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: protocol.HeaderDestination, RawValue: []byte(p.header)}},
			}}},
		}},
		DynamicMetadata: md,
	})
}

// TestExtProcClientMetadataNeedsReceivingNamespace: like Envoy v1.39
// (Filter::setDynamicMetadata), the host's ext_proc client drops the
// server's dynamic metadata unless metadata_options.receiving_namespaces
// names its namespace; an ORIGINAL_DST-style route then falls back to the
// header.
func TestExtProcClientMetadataNeedsReceivingNamespace(t *testing.T) {
	t.Parallel()
	byHeader, byMetadata := startBackend(t, "header"), startBackend(t, "metadata")
	sock := filepath.Join(t.TempDir(), "picker.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, &splitPicker{header: byHeader.Addr, metadata: byMetadata.Addr})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	for _, tc := range []struct {
		name    string
		receive bool
		want    *harness.Backend
	}{
		{"receiving envoy.lb", true, byMetadata},
		{"no receiving namespaces", false, byHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := harness.ExtProcHost("unix://"+sock, harness.Buffered)
			if !tc.receive {
				delete(opts.Config.(map[string]any), "metadata_options")
			}
			h := startHost(t, opts)
			before := len(tc.want.Requests())
			if status, body := rawGet(t, h.URL("/health")); status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			if len(tc.want.Requests()) != before+1 {
				t.Errorf("the request did not reach the %s backend", tc.want.Name)
			}
		})
	}
}
