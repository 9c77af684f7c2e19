package aigatewayroute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/inflow-gateway/inflow/internal/golden"
)

func readRoute(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestGolden converts every testdata/in/*.yaml AIGatewayRoute and compares
// the HTTPRoute (and the problems) with testdata/out.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	produced := map[string]bool{}
	for _, in := range inputs {
		out := filepath.Join("testdata", "out", filepath.Base(in))
		produced[out] = true
		t.Run(strings.TrimSuffix(filepath.Base(in), ".yaml"), func(t *testing.T) {
			res, err := HTTPRoute(readRoute(t, in))
			if err != nil {
				t.Fatal(err)
			}
			b, err := yaml.Marshal(map[string]any{"httpRoute": res.Route, "problems": res.Problems})
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, out, b)
		})
	}
	golden.Orphans(t, filepath.Join("testdata", "out"), produced)
}

func TestOwnership(t *testing.T) {
	route := readRoute(t, filepath.Join("testdata", "in", "pools.yaml"))
	res, err := HTTPRoute(route)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := toUnstructured(res.Route)
	if err != nil {
		t.Fatal(err)
	}
	if !OwnedBy(obj, route) || !OwnedBy(obj, nil) {
		t.Error("the generated HTTPRoute is not owned by its AIGatewayRoute")
	}
	other := route.DeepCopy()
	other.SetUID("another")
	if OwnedBy(obj, other) {
		t.Error("owned by an AIGatewayRoute of the same name but another UID")
	}
	obj.SetLabels(nil)
	if OwnedBy(obj, nil) {
		t.Error("an HTTPRoute without the managed-by label counts as generated")
	}
	// The AI Gateway controller's HTTPRoute for this route: taken over.
	if !OwnedBy(obj, route) {
		t.Error("the HTTPRoute the AI Gateway generated for this very AIGatewayRoute is not taken over")
	}
	obj.SetOwnerReferences(nil)
	if OwnedBy(obj, route) {
		t.Error("an HTTPRoute without an owner reference counts as generated")
	}
}

func TestRefusesABrokenSpec(t *testing.T) {
	u := readRoute(t, filepath.Join("testdata", "in", "pools.yaml"))
	u.Object["spec"] = map[string]any{"rules": "not a list"}
	if _, err := HTTPRoute(u); err == nil {
		t.Error("a spec of the wrong shape was converted")
	}
	delete(u.Object, "spec")
	if _, err := HTTPRoute(u); err == nil {
		t.Error("a route without spec was converted")
	}
}
