package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

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

// Parse decodes a JSON config and validates it, as this filter reads the
// plugin_config Envoy hands it: unknown fields are refused in a config of
// this filter's schema version or older, and ignored (see Ignored) in a
// config of a newer version. The package doc has the policy.
func Parse(data []byte) (*Config, error) { return parseAs(data, SchemaVersion) }

// parseAs reads data as a filter of schema version reader would; tests use
// an older reader to play an old filter meeting a newer config.
func parseAs(data []byte, reader int) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers exact until the typed decode below
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: unexpected data after the JSON object")
	}
	if doc == nil {
		return nil, errors.New("config: must be a JSON object, got null")
	}
	version, err := versionOf(doc)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	newer := version > reader
	unknown := unknownFields(doc, reflect.TypeFor[Config](), reader, "")
	if len(unknown) > 0 && !newer {
		return nil, unknownFieldsError(unknown, version, reader)
	}
	known, err := json.Marshal(doc) // doc without the unknown fields
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	strict := json.NewDecoder(bytes.NewReader(known))
	strict.DisallowUnknownFields()
	var c Config
	err = strict.Decode(&c)
	if err != nil {
		err = describeJSONError(err)
	} else if err = c.Validate(); err != nil {
		err = fmt.Errorf("config: %w", err)
	}
	if err != nil && newer {
		return nil, fmt.Errorf("%w (the config is schema version %d, newer than this filter's %d: "+
			"upgrade the filter, or have the control plane keep to what this version reads)", err, version, reader)
	}
	if err != nil {
		return nil, err
	}
	if newer {
		c.ignored = unknown
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
	data, err := pluginJSON(a, TypeURL)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// pluginJSON is the JSON object inside a plugin_config Any: a TypedStruct
// of schema want (or of none), or a bare Struct.
func pluginJSON(a *anypb.Any, want string) ([]byte, error) {
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
		if u := ts.GetTypeUrl(); u != "" && u != want {
			return nil, fmt.Errorf("config: plugin_config.type_url: want %q, got %q", want, u)
		}
		s = ts.GetValue()
	case structURL:
		s = &structpb.Struct{}
		if err := a.UnmarshalTo(s); err != nil {
			return nil, fmt.Errorf("config: plugin_config: %w", err)
		}
	default:
		return nil, fmt.Errorf("config: plugin_config: unsupported type %q (want %s wrapping %s)",
			a.GetTypeUrl(), typedStructURL, want)
	}
	if s == nil {
		s = &structpb.Struct{}
	}
	data, err := protojson.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("config: plugin_config: %w", err)
	}
	return data, nil
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

// ToStruct converts c to the protobuf Struct form carried in a TypedStruct,
// stamped with SchemaVersion unless c says which version it is.
func ToStruct(c *Config) (*structpb.Struct, error) {
	stamped := *c
	if stamped.Version == 0 {
		stamped.Version = SchemaVersion
	}
	data, err := json.Marshal(&stamped)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return s, nil
}
