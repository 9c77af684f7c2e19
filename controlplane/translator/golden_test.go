package translator_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/internal/golden"
)

func load(t *testing.T, path string) *spec.Config {
	t.Helper()
	loaded, err := configfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return loaded.Config
}

// TestGolden translates every testdata/in/*.yaml and compares the printed
// resources with testdata/out/. Regenerate with make update-goldens.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/in")
	}
	outDir := filepath.Join("testdata", "out")
	produced := map[string]bool{}
	for _, in := range inputs {
		out := filepath.Join(outDir, filepath.Base(in))
		produced[out] = true
		t.Run(strings.TrimSuffix(filepath.Base(in), ".yaml"), func(t *testing.T) {
			res, err := translator.Translate(load(t, in))
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := translator.WriteYAML(&b, res); err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, out, b.Bytes())
		})
	}
	golden.Orphans(t, outDir, produced)
}
