package config

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const valid = `{
  "models": [
    {"name": "llama", "pool": "gpu", "rewrite": [{"model": "base", "weight": 3}, {"model": "lora-a"}]},
    {"name": "gpt", "backend": "openai"}
  ],
  "pools": [{"name": "gpu", "endpoints": ["10.0.0.1:8000", "[fd00::1]:8000"]}],
  "backends": [{"name": "openai"}]
}`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Limits.EffectiveMaxRequestBodyBytes(); got != DefaultMaxRequestBodyBytes {
		t.Errorf("default body limit = %d", got)
	}
	if w := c.Models[0].Rewrite[1].EffectiveWeight(); w != 1 {
		t.Errorf("default weight = %d", w)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct{ name, js, want string }{
		{"unknown field", `{"models":[{"name":"m","pool":"p"}],"pols":[]}`, `unknown field "pols"`},
		{"wrong type", `{"models":[{"name":"m","pool":5}]}`, "models.pool"},
		{"trailing data", valid + `{}`, "after the JSON object"},
		{"empty model name", `{"models":[{"pool":"p"}],"pools":[{"name":"p","endpoints":[]}]}`, "models[0].name: must not be empty"},
		{"duplicate model", `{"models":[{"name":"m","pool":"p"},{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":[]}]}`, `models[1].name: duplicate model "m"`},
		{"both destinations", `{"models":[{"name":"m","pool":"p","backend":"b"}],"pools":[{"name":"p","endpoints":[]}],"backends":[{"name":"b"}]}`, "models[0]: set either pool or backend"},
		{"no destination", `{"models":[{"name":"m"}]}`, "models[0]: one of pool or backend"},
		{"undefined pool", `{"models":[{"name":"m","pool":"x"}]}`, `models[0].pool: pool "x" is not defined`},
		{"undefined backend", `{"models":[{"name":"m","backend":"x"}]}`, `models[0].backend: backend "x" is not defined`},
		{"hostname endpoint", `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":["vllm:8000"]}]}`, "pools[0].endpoints[0]"},
		{"port zero", `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":["10.0.0.1:0"]}]}`, "pools[0].endpoints[0]"},
		{"non-canonical IPv6", `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":["[FD00:0::1]:8000"]}]}`, `pools[0].endpoints[0]: write "[FD00:0::1]:8000" as "[fd00::1]:8000"`},
		{"duplicate endpoint", `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":["10.0.0.1:1","10.0.0.1:1"]}]}`, "pools[0].endpoints[1]: duplicate"},
		{"duplicate pool", `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":[]},{"name":"p","endpoints":[]}]}`, "pools[1].name: duplicate"},
		{"pool name with a slash", `{"models":[{"name":"m","pool":"a/b"}],"pools":[{"name":"a/b","endpoints":[]}]}`, "pools[0].name"},
		{"backend name with a space", `{"models":[{"name":"m","backend":"a b"}],"backends":[{"name":"a b"}]}`, "backends[0].name"},
		{"duplicate backend", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"},{"name":"b"}]}`, "backends[1].name: duplicate"},
		{"empty rewrite target", `{"models":[{"name":"m","backend":"b","rewrite":[{"model":""}]}],"backends":[{"name":"b"}]}`, "models[0].rewrite[0].model"},
		{"zero weights", `{"models":[{"name":"m","backend":"b","rewrite":[{"model":"x","weight":0}]}],"backends":[{"name":"b"}]}`, "models[0].rewrite: weights must not all be zero"},
		{"negative weight", `{"models":[{"name":"m","backend":"b","rewrite":[{"model":"x","weight":-1}]}],"backends":[{"name":"b"}]}`, "models.rewrite.weight"},
		{"backend_refs of a pool", `{"models":[{"name":"m","pool":"p","backend_refs":[{"backend":"b"}]}],"pools":[{"name":"p","endpoints":[]}],"backends":[{"name":"b"}]}`, "models[0].backend_refs: a model of a pool"},
		{"backend_refs to an undefined backend", `{"models":[{"name":"m","backend":"b","backend_refs":[{"backend":"b"},{"backend":"x"}]}],"backends":[{"name":"b"}]}`, `models[0].backend_refs[1].backend: backend "x" is not defined`},
		{"backend_refs without weight", `{"models":[{"name":"m","backend":"b","backend_refs":[{"backend":"b","weight":0}]}],"backends":[{"name":"b"}]}`, "models[0].backend_refs: weights must not all be zero"},
		{"backend not among backend_refs", `{"models":[{"name":"m","backend":"a","backend_refs":[{"backend":"b"}]}],"backends":[{"name":"a"},{"name":"b"}]}`, `models[0].backend: "a" must be the backend of one of backend_refs`},
		{"backend_refs without backend", `{"models":[{"name":"m","backend_refs":[{"backend":"b"}]}],"backends":[{"name":"b"}]}`, "models[0]: one of pool or backend"},
		{"unknown destination", `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":[],"destination":"dns"}]}`, `pools[0].destination: must be "override_host" or "original_dst", got "dns"`},
		{"cost without key", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"costs":[{"type":"InputToken"}]}`, "costs[0]: metadata_key must not be empty"},
		{"cost of unknown type", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"costs":[{"metadata_key":"k","type":"Tokens"}]}`, "costs[0]: type must be one of"},
		{"bad CEL", `{"models":[{"name":"m","backend":"b","costs":[{"metadata_key":"k","type":"CEL","cel":"input_tokens * "}]}],"backends":[{"name":"b"}]}`, "models[0].costs[0]: cel:"},
		{"CEL of the wrong type", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"costs":[{"metadata_key":"k","type":"CEL","cel":"model"}]}`, "costs[0]: cel: the result must be an integer"},
		{"duplicate cost key", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"costs":[{"metadata_key":"k","type":"InputToken"},{"metadata_key":"k","type":"OutputToken"}]}`, "costs[1].metadata_key: duplicate"},
		{"metrics address without port", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"genai_metrics":{"address":"127.0.0.1"}}`, "genai_metrics.address"},
		{"relay without port", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"shared_state":{"relay":"inflow-controlplane"}}`, "shared_state.relay"},
		{"relay port out of range", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"shared_state":{"relay":"relay:70000"}}`, "shared_state.relay"},
		{"relay as a URL", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"shared_state":{"relay":"http://relay:18002"}}`, "shared_state.relay"},
		{"body limit too big", `{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"limits":{"max_request_body_bytes":1073741824}}`, "limits.max_request_body_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.js))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestResponsePathSettings(t *testing.T) {
	c, err := Parse([]byte(`{"models":[{"name":"m","pool":"p","costs":[{"metadata_key":"llm_total_token","type":"CEL","cel":"total_tokens * 2u"}]}],
		"pools":[{"name":"p","endpoints":[]}],
		"costs":[{"metadata_key":"llm_input_token","type":"InputToken"}],
		"usage":{"request_usage":false},"genai_metrics":{"address":"0.0.0.0:9464"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Usage.EffectiveRequestUsage() || c.GenAIMetrics.Address != "0.0.0.0:9464" || len(c.Costs) != 1 || len(c.Models[0].Costs) != 1 {
		t.Errorf("parsed %+v", c)
	}
	if !(Usage{}).EffectiveRequestUsage() {
		t.Error("request_usage defaults to on")
	}
}

func TestAnyRoundTrip(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ToAny(c)
	if err != nil {
		t.Fatal(err)
	}
	// Envoy hands the filter the serialized Any; go through the wire.
	wire, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back anypb.Any
	if err := proto.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	got, err := FromAny(&back)
	if err != nil {
		t.Fatal(err)
	}
	if got.Models[0].Rewrite[0].EffectiveWeight() != 3 || got.Pools[0].Endpoints[1] != "[fd00::1]:8000" || got.Models[1].Backend != "openai" {
		t.Fatalf("round trip lost data: %+v", got)
	}
}

func TestToAnyIsDeterministic(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	first, err := ToAny(c)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		next, err := ToAny(c)
		if err != nil {
			t.Fatal(err)
		}
		if string(next.GetValue()) != string(first.GetValue()) {
			t.Fatal("the same config must always encode to the same bytes")
		}
	}
}

func TestFromAnyForms(t *testing.T) {
	s := &structpb.Struct{}
	if err := s.UnmarshalJSON([]byte(valid)); err != nil {
		t.Fatal(err)
	}
	bare, err := anypb.New(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromAny(bare); err != nil {
		t.Errorf("bare Struct: %v", err)
	}
	ts, err := ToAny(&Config{Models: []Model{{Name: "m", Backend: "b"}}, Backends: []Backend{{Name: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	udpa := &anypb.Any{TypeUrl: udpaTypedStructURL, Value: ts.GetValue()}
	if _, err := FromAny(udpa); err != nil {
		t.Errorf("udpa TypedStruct: %v", err)
	}
	str, err := anypb.New(wrapperspb.String(valid))
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*anypb.Any{"nil": nil, "StringValue": str, "garbage": {TypeUrl: typedStructURL, Value: []byte{0xff}}} {
		if _, err := FromAny(a); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDestinationDefaultsToOverrideHost(t *testing.T) {
	c, err := Parse([]byte(`{"models":[{"name":"m","pool":"a"}],"pools":[
		{"name":"a","endpoints":[]},
		{"name":"b","endpoints":[],"destination":"original_dst"},
		{"name":"c","endpoints":[],"destination":"override_host"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Destination{DestinationOverrideHost, DestinationOriginalDst, DestinationOverrideHost}
	for i, p := range c.Pools {
		if got := p.Destination.Effective(); got != want[i] {
			t.Errorf("pool %s: destination %q, want %q", p.Name, got, want[i])
		}
	}
}
