// Package golden compares test output with files under testdata/ and
// rewrites them when UPDATE_GOLDEN is set:
//
//	UPDATE_GOLDEN=1 go test ./controlplane/... ./filter/config/   (or: make update-goldens)
//
// An environment variable rather than a -update flag: `go test ./...`
// passes a flag to every test binary, so each package would have to define
// it (import this one) just to not fail with "flag provided but not
// defined".
//
// A golden directory holds exactly what its test produces: a plain run
// fails on a file no test produced (an orphan, say of a removed input), and
// an update run removes it.
package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// UpdateEnv is the environment variable that makes Assert rewrite goldens.
const UpdateEnv = "UPDATE_GOLDEN"

// Updating reports whether this run rewrites goldens.
func Updating() bool { return os.Getenv(UpdateEnv) != "" }

// Assert compares got with the file at path, or writes it when updating.
func Assert(t testing.TB, path string, got []byte) {
	t.Helper()
	if Updating() {
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
		t.Fatalf("%v (run with %s=1 to create it)", err, UpdateEnv)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run with %s=1 to accept):\n%s", path, UpdateEnv, diff(want, got))
	}
}

// Orphans checks that dir holds only the files in produced (paths as passed
// to Assert): it fails the test for any other file, or removes it when
// updating. Call it after every Assert on dir.
func Orphans(t testing.TB, dir string, produced map[string]bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || produced[p] {
			continue
		}
		if !Updating() {
			t.Errorf("orphaned golden %s: no test produces it (run with %s=1 to remove it)", p, UpdateEnv)
			continue
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		t.Logf("removed orphaned golden %s", p)
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
