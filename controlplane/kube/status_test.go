package kube

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestRouteConditionsRoundTrip: conditions written to an object read back
// equal, so an unchanged report writes nothing on the next build (a write
// per build would load the API server and conflict with itself).
func TestRouteConditionsRoundTrip(t *testing.T) {
	rep := &RouteReport{Generation: 3, Served: 1, Problems: []string{"rules[1]: no backendRefs"}}
	first := merge(nil, routeConditions(rep), condNotAccepted)
	conds := make([]any, 0, len(first))
	for _, c := range first {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			t.Fatal(err)
		}
		conds = append(conds, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	if err := unstructured.SetNestedSlice(u.Object, conds, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	have := conditionsOf(u)
	if len(have) != 2 {
		t.Fatalf("read back %d conditions: %+v", len(have), have)
	}
	if again := merge(have, routeConditions(rep), condNotAccepted); !equality.Semantic.DeepEqual(have, again) {
		t.Fatalf("an unchanged report changes the conditions:\n%+v\n%+v", have, again)
	}
}
