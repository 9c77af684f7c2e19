package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxTrackedBytes bounds any one committed file: sources, goldens and
// docs are far smaller, so a file above it is almost always a stray build
// output (`go build ./cmd/x` drops its binary in the working directory).
const maxTrackedBytes = 1 << 20

// TestNoBuildOutputsCommitted fails on executables and oversized files in
// git's index: they bloat every clone for good once pushed.
func TestNoBuildOutputsCommitted(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range bytes.Split(bytes.TrimRight(out, "\x00"), []byte{0}) {
		path := filepath.Join(root, string(name))
		info, err := os.Lstat(path)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		if info.Size() > maxTrackedBytes {
			t.Errorf("%s: %d bytes committed (limit %d): a build output?", name, info.Size(), maxTrackedBytes)
			continue
		}
		head := make([]byte, 4)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := f.Read(head)
		f.Close()
		if bytes.Equal(head[:n], []byte("\x7fELF")) {
			t.Errorf("%s: an ELF binary is committed", name)
		}
	}
}
