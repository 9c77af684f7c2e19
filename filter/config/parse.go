package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// TypeURL names this schema inside the TypedStruct that carries it as the
// golang filter's plugin_config.
const TypeURL = "type.googleapis.com/inflow.v1.FilterConfig"

const (
	typedStructURL     = "type.googleapis.com/xds.type.v3.TypedStruct"
	udpaTypedStructURL = "type.googleapis.com/udpa.type.v1.TypedStruct"
	structURL          = "type.googleapis.com/google.protobuf.Struct"
)

// Parse decodes a JSON config strictly (unknown fields are errors) and
// validates it.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: unexpected data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fmt.Errorf("config: %s: expected %s, got JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	return fmt.Errorf("config: %w", err)
}

// FromAny decodes the golang filter's plugin_config: an xds.type.v3 (or
// udpa.type.v1) TypedStruct whose value is the config, or a bare Struct.
func FromAny(a *anypb.Any) (*Config, error) {
	if a == nil {
		return nil, errors.New("config: plugin_config is missing")
	}
	var s *structpb.Struct
	switch a.GetTypeUrl() {
	case typedStructURL, udpaTypedStructURL:
		// udpa's TypedStruct has the same wire format as xds's.
		var ts xdstype.TypedStruct
		if err := proto.Unmarshal(a.GetValue(), &ts); err != nil {
			return nil, fmt.Errorf("config: plugin_config: %w", err)
		}
		if u := ts.GetTypeUrl(); u != "" && u != TypeURL {
			return nil, fmt.Errorf("config: plugin_config.type_url: want %q, got %q", TypeURL, u)
		}
		s = ts.GetValue()
	case structURL:
		s = &structpb.Struct{}
		if err := a.UnmarshalTo(s); err != nil {
			return nil, fmt.Errorf("config: plugin_config: %w", err)
		}
	default:
		return nil, fmt.Errorf("config: plugin_config: unsupported type %q (want %s wrapping %s)",
			a.GetTypeUrl(), typedStructURL, TypeURL)
	}
	if s == nil {
		s = &structpb.Struct{}
	}
	data, err := protojson.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("config: plugin_config: %w", err)
	}
	return Parse(data)
}

// ToAny wraps c as the plugin_config Envoy expects: Any{TypedStruct{TypeURL, c}}.
func ToAny(c *Config) (*anypb.Any, error) {
	s, err := ToStruct(c)
	if err != nil {
		return nil, err
	}
	// Deterministic: Struct fields are a map, and Envoy treats a listener
	// whose bytes changed as a new one to drain and rebuild.
	a := &anypb.Any{}
	err = anypb.MarshalFrom(a, &xdstype.TypedStruct{TypeUrl: TypeURL, Value: s}, proto.MarshalOptions{Deterministic: true})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return a, nil
}

// ToStruct converts c to the protobuf Struct form carried in a TypedStruct.
func ToStruct(c *Config) (*structpb.Struct, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return s, nil
}
