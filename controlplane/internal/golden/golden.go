// Package golden compares test output with files under testdata/ and
// rewrites them when tests run with -update:
//
//	go test ./controlplane/... -update
//
// Every test package under controlplane/ imports this package, because
// `go test ./...` passes -update to every test binary and one that does not
// define it fails with "flag provided but not defined".
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Update is true when the goldens should be rewritten.
var Update = flag.Bool("update", false, "rewrite golden files under testdata/ (and remove stale ones)")

// Assert compares got with the file at path, or writes it under -update.
func Assert(t *testing.T, path string, got []byte) {
	t.Helper()
	if *Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run with -update to accept):\n%s", path, diff(want, got))
	}
}

// RemoveStale deletes files in dir that this run did not produce; it only
// acts under -update so a plain run never changes testdata.
func RemoveStale(t *testing.T, dir string, produced map[string]bool) {
	t.Helper()
	if !*Update {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || produced[p] {
			continue
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		t.Logf("removed stale golden %s", p)
	}
}

// diff shows the first differing line with a little context: enough to
// see what changed without a diff dependency.
func diff(want, got []byte) string {
	w, g := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl []byte
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if !bytes.Equal(wl, gl) {
			var b bytes.Buffer
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(i + 1))
			b.WriteString(":\n- want: ")
			b.Write(wl)
			b.WriteString("\n+ got:  ")
			b.Write(gl)
			return b.String()
		}
	}
	return "(no line differs; lengths differ)"
}
