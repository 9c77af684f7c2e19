package check

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/modfile"
)

// TestEPPModuleMatchesVersions: the Endpoint Picker that make gie-epp
// builds (and caches under bin/epp/<GIE_EPP_VERSION>) is the version
// build/epp/go.mod requires, so the cache key never lies.
func TestEPPModuleMatchesVersions(t *testing.T) {
	r := root(t)
	want := versions(t).GIEEPP
	path := filepath.Join(r, "build", "epp", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, req := range f.Require {
		if req.Mod.Path == "sigs.k8s.io/gateway-api-inference-extension" {
			got = req.Mod.Version
		}
	}
	if got != want {
		t.Errorf("build/epp/go.mod requires sigs.k8s.io/gateway-api-inference-extension %q, versions.env says GIE_EPP_VERSION=%s", got, want)
	}
	if f.Go == nil || f.Go.Version != versions(t).Go {
		t.Errorf("build/epp/go.mod's go line is %v, versions.env says GO_VERSION=%s", f.Go, versions(t).Go)
	}
}
