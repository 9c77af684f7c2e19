package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, format)
}

func TestOrphanedGoldenFailsAPlainRun(t *testing.T) {
	t.Setenv(UpdateEnv, "")
	dir := t.TempDir()
	kept, orphan := filepath.Join(dir, "kept.yaml"), filepath.Join(dir, "orphan.yaml")
	for _, p := range []string{kept, orphan} {
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{TB: t}
	Orphans(r, dir, map[string]bool{kept: true})
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "orphaned golden") {
		t.Fatalf("errors %q, want one naming the orphan", r.errors)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("a plain run must not delete goldens: %v", err)
	}
}

func TestUpdateRemovesOrphans(t *testing.T) {
	t.Setenv(UpdateEnv, "1")
	dir := t.TempDir()
	orphan := filepath.Join(dir, "orphan.yaml")
	if err := os.WriteFile(orphan, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	Orphans(r, dir, map[string]bool{})
	if len(r.errors) != 0 {
		t.Fatalf("errors %q while updating", r.errors)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan still there after an update run: %v", err)
	}
}
