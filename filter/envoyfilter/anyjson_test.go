package envoyfilter

import (
	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inflow-gateway/inflow/filter/config"
)

// toStruct wraps raw JSON in the TypedStruct Envoy would deliver, without
// validating it first, so tests can send invalid configs.
func toStruct(js string) (*anypb.Any, error) {
	s := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(js), s); err != nil {
		return nil, err
	}
	return anypb.New(&xdstype.TypedStruct{TypeUrl: config.TypeURL, Value: s})
}
