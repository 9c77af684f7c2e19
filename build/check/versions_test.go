package check

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func versions(t *testing.T) Versions {
	t.Helper()
	v, err := ReadVersions(root(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGoModMatchesVersions: the Go SDK the filter is built against is the
// Envoy the image runs (the C ABI is per version), and the images build
// with go.mod's Go.
func TestGoModMatchesVersions(t *testing.T) {
	v := versions(t)
	path := filepath.Join(root(t), "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sdk string
	for _, r := range f.Require {
		if r.Mod.Path == "github.com/envoyproxy/envoy" {
			sdk = r.Mod.Version
		}
	}
	if sdk != v.Envoy {
		t.Errorf("go.mod requires github.com/envoyproxy/envoy %q, versions.env says ENVOY_VERSION=%s", sdk, v.Envoy)
	}
	if f.Go == nil || f.Go.Version != v.Go {
		t.Errorf("go.mod's go line is %v, versions.env says GO_VERSION=%s", f.Go, v.Go)
	}
}

// TestDockerfiles: the ARG defaults are versions.env's, the final Envoy
// stage is FROM the contrib image of that version, the filter is built on
// that same image (so against its glibc), and everything COPY takes from
// the context exists and is let through by the Dockerfile's .dockerignore.
func TestDockerfiles(t *testing.T) {
	v := versions(t)
	r := root(t)
	tests := []struct {
		file      string
		wantArgs  map[string]string
		wantFroms []string // every FROM image, expanded, in order
	}{
		{"envoy.Dockerfile", map[string]string{"ENVOY_VERSION": v.Envoy, "GO_VERSION": v.Go},
			[]string{"golang:" + v.Go + "-bookworm", v.EnvoyImage(), v.EnvoyImage()}},
		{"controlplane.Dockerfile", map[string]string{"GO_VERSION": v.Go},
			[]string{"golang:" + v.Go + "-bookworm", "gcr.io/distroless/static-debian12:nonroot"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(r, "build", tt.file)
			ins, err := ParseDockerfile(path)
			if err != nil {
				t.Fatal(err)
			}
			args := GlobalArgs(ins)
			for k, want := range tt.wantArgs {
				if args[k] != want {
					t.Errorf("ARG %s=%q, versions.env says %q", k, args[k], want)
				}
			}
			var froms []string
			user := ""
			for _, in := range ins {
				switch in.Cmd {
				case "FROM":
					froms = append(froms, Expand(in.Args[0], args))
					user = ""
				case "USER":
					user = in.Args[0]
				case "COPY":
					checkCopy(t, r, path, in)
				}
			}
			if strings.Join(froms, " ") != strings.Join(tt.wantFroms, " ") {
				t.Errorf("FROM images %v, want %v", froms, tt.wantFroms)
			}
			if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
				t.Errorf("final stage runs as %q, want a non-root USER", user)
			}
		})
	}
}

// checkCopy fails if a COPY from the build context names a path that does
// not exist or that the Dockerfile's .dockerignore leaves out.
func checkCopy(t *testing.T, root, dockerfile string, in Instruction) {
	t.Helper()
	var srcs []string
	for _, a := range in.Args {
		if strings.HasPrefix(a, "--from=") {
			return // from a stage, not the context
		}
		if !strings.HasPrefix(a, "--") {
			srcs = append(srcs, a)
		}
	}
	allowed := dockerignoreAllows(t, dockerfile+".dockerignore")
	for _, src := range srcs[:len(srcs)-1] {
		if _, err := os.Stat(filepath.Join(root, src)); err != nil {
			t.Errorf("line %d: COPY %s: %v", in.Line, src, err)
		}
		if !allowed[strings.TrimSuffix(src, "/")] {
			t.Errorf("line %d: COPY %s, which the .dockerignore excludes", in.Line, src)
		}
	}
}

// dockerignoreAllows reads an ignore file of the shape "*" then "!path"
// lines, returning the paths let through.
func dockerignoreAllows(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(l), "!"); ok {
			allowed[strings.TrimSuffix(p, "/")] = true
		}
	}
	return allowed
}

// TestEnvoyVersionMentions: every mention of the contrib image or of the
// SDK version in the docs and configs names versions.env's version.
func TestEnvoyVersionMentions(t *testing.T) {
	v := versions(t)
	r := root(t)
	mention := regexp.MustCompile(`(?:contrib-|envoyproxy/envoy\x60? )(v\d+\.\d+\.\d+)`)
	files := []string{"README.md", "envoy.yaml", "controlplane/README.md", "e2e/envoyhost/README.md",
		"docs/deploy.md", "docs/migration.md", "e2e/docker-compose.yaml", "build/envoy.Dockerfile"}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(r, f))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, m := range mention.FindAllStringSubmatch(string(data), -1) {
			if m[1] != v.Envoy {
				t.Errorf("%s: %q names Envoy %s, versions.env says %s", f, m[0], m[1], v.Envoy)
			}
		}
	}
	for _, f := range []string{"docs/deploy.md", "docs/migration.md"} {
		data, _ := os.ReadFile(filepath.Join(r, f))
		for _, want := range []string{v.EnvoyImage(), v.InflowEnvoyImage()} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s does not mention %s", f, want)
			}
		}
	}
}

// glibcMax is the glibc of the Envoy image: Ubuntu 22.04 (envoy v1.39.0
// distribution/docker/Dockerfile-envoy, BUILD_TAG=22.04) ships 2.35.
var glibcMax = [2]int{2, 35}

// TestFilterNeedsNoNewerGlibc builds inflow.so here (Debian 12, glibc 2.36)
// and reads the glibc symbol versions it imports: a .so that needs a newer
// glibc than the Envoy image's fails to dlopen there. The image builds on
// the Envoy image itself; this shows the code needs nothing newer either.
func TestFilterNeedsNoNewerGlibc(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the filter")
	}
	so := filepath.Join(t.TempDir(), "inflow.so")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", so, "./filter")
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, s := range syms {
		ver, ok := strings.CutPrefix(s.Version, "GLIBC_")
		if !ok {
			continue
		}
		seen++
		major, minor, _ := strings.Cut(ver, ".")
		minor, _, _ = strings.Cut(minor, ".")
		a, err1 := strconv.Atoi(major)
		b, err2 := strconv.Atoi(minor)
		if err1 != nil || err2 != nil {
			t.Errorf("%s: unreadable version %q", s.Name, s.Version)
			continue
		}
		if a > glibcMax[0] || a == glibcMax[0] && b > glibcMax[1] {
			t.Errorf("%s needs %s, newer than the Envoy image's glibc %d.%d", s.Name, s.Version, glibcMax[0], glibcMax[1])
		}
	}
	if seen == 0 {
		t.Fatal("no GLIBC_ symbol versions found: not a cgo shared library?")
	}
}

// TestMakefileTakesVersionsFromOneFile: the Makefile includes versions.env
// and no make file writes a version of its own.
func TestMakefileTakesVersionsFromOneFile(t *testing.T) {
	v := versions(t)
	r := root(t)
	top, err := os.ReadFile(filepath.Join(r, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(top), "\ninclude build/versions.env\n") {
		t.Error("the Makefile does not include build/versions.env")
	}
	mks, err := filepath.Glob(filepath.Join(r, "mk", "*.mk"))
	if err != nil || len(mks) == 0 {
		t.Fatalf("no mk/*.mk: %v", err)
	}
	for _, f := range append(mks, filepath.Join(r, "Makefile")) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ver := range []string{v.Envoy, v.Go, v.Inflow, v.LLMDSim, v.Kubernetes, v.Etcd} {
			if strings.Contains(string(data), ver) {
				t.Errorf("%s hard-codes %s", filepath.Base(f), ver)
			}
		}
	}
}

// TestKubeAssetsModule: build/kubeassets builds the Kubernetes and etcd
// versions.env names, and points every staging module at the release of
// that Kubernetes version (v1.37.2 -> v0.37.2).
func TestKubeAssetsModule(t *testing.T) {
	v := versions(t)
	path := filepath.Join(root(t), "build", "kubeassets", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"k8s.io/kubernetes": v.Kubernetes, "go.etcd.io/etcd/server/v3": v.Etcd}
	for _, r := range f.Require {
		if w, ok := want[r.Mod.Path]; ok {
			if r.Mod.Version != w {
				t.Errorf("build/kubeassets requires %s %s, versions.env says %s", r.Mod.Path, r.Mod.Version, w)
			}
			delete(want, r.Mod.Path)
		}
	}
	if len(want) > 0 {
		t.Errorf("build/kubeassets does not require %v", want)
	}
	staging := "v0" + strings.TrimPrefix(v.Kubernetes, "v1")
	if len(f.Replace) < 20 {
		t.Errorf("build/kubeassets has %d replaces; kubernetes needs one per staging module", len(f.Replace))
	}
	for _, r := range f.Replace {
		if !strings.HasPrefix(r.Old.Path, "k8s.io/") || r.New.Path != r.Old.Path || r.New.Version != staging {
			t.Errorf("replace %s => %s %s: want %s", r.Old.Path, r.New.Path, r.New.Version, staging)
		}
	}
}
