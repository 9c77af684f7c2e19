package config

import (
	"strings"
	"testing"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func typedStruct(t *testing.T, typeURL, js string) *anypb.Any {
	t.Helper()
	s := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(js), s); err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(&xdstype.TypedStruct{TypeUrl: typeURL, Value: s})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRouteConfigRoundTrip(t *testing.T) {
	a, err := RouteToAny(&RouteConfig{Pool: "default.llama"})
	if err != nil {
		t.Fatal(err)
	}
	if !IsRouteConfig(a) {
		t.Fatal("RouteToAny's output is not recognised as a route config")
	}
	r, err := RouteFromAny(a)
	if err != nil || r.Pool != "default.llama" {
		t.Fatalf("RouteFromAny = %+v, %v", r, err)
	}
	again, _ := RouteToAny(r)
	if string(again.GetValue()) != string(a.GetValue()) {
		t.Error("RouteToAny is not deterministic")
	}
}

func TestRouteConfigIsNotAFilterConfig(t *testing.T) {
	filter := typedStruct(t, TypeURL, `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":[]}]}`)
	if IsRouteConfig(filter) {
		t.Error("a FilterConfig was taken for a route config")
	}
	route := typedStruct(t, RouteTypeURL, `{"pool":"p"}`)
	if _, err := FromAny(route); err == nil || !strings.Contains(err.Error(), RouteTypeURL) {
		t.Errorf("FromAny of a route config: %v, want a type_url error naming it", err)
	}
}

func TestRouteConfigRefusesBadInput(t *testing.T) {
	for name, js := range map[string]string{
		"unknown field": `{"pool":"p","models":[]}`,
		"no pool":       `{}`,
		"bad name":      `{"pool":"a/b"}`,
		"wrong type":    `{"pool":3}`,
	} {
		if _, err := RouteFromAny(typedStruct(t, RouteTypeURL, js)); err == nil {
			t.Errorf("%s: %s accepted", name, js)
		}
	}
}

func TestPoolsWithoutModelsAreAConfig(t *testing.T) {
	if err := (&Config{Pools: []Pool{{Name: "p", Endpoints: []string{}}}}).Validate(); err != nil {
		t.Errorf("a config of pools only (served through bound routes): %v", err)
	}
}
