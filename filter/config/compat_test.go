package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/internal/golden"

	"github.com/inflow-gateway/inflow/filter/cost"
)

// The compatibility files: testdata/compat/vN.json is compatReference as the
// writer of schema version N wrote it. Older files are frozen history; the
// current version's file is a golden (make update-goldens writes it).

var compatDir = filepath.Join("testdata", "compat")

func compatFile(v int) string { return filepath.Join(compatDir, fmt.Sprintf("v%d.json", v)) }

// compatReference sets every field of the schema at least once (a test
// checks), so each version's file shows every field that version has. Set
// a new field here when you add it.
func compatReference() *Config {
	w := func(v float64) *float64 { return &v }
	weight, fallbacks, yes := uint32(3), 1, true
	return &Config{
		Models: []Model{
			{Name: "llama", Pool: "gpu", OwnedBy: "platform", Rewrite: []Target{{Model: "base", Weight: &weight}, {Model: "sql-lora"}},
				Costs: []cost.Spec{{MetadataKey: "weighted", Type: cost.CEL, CEL: "input_tokens + 3u * output_tokens"}}},
			{Name: "gpt", Backend: "openai"},
			{Name: "gpt-4o", Backend: "openai", Rewrite: []Target{{Model: "gpt-4o-2024"}}, BackendRefs: []BackendRef{
				{Backend: "openai", Model: "gpt-4o-2024", Weight: &weight}, {Backend: "azure", Model: "gpt4o-deployment", Priority: 1}}},
		},
		Pools: []Pool{{
			Name:        "gpu",
			Endpoints:   []string{"10.0.0.1:8000", "[fd00::1]:8000"},
			Destination: DestinationOriginalDst,
			Objectives:  map[string]int{"batch": 2, "bulk": -1},
			Scheduler: &Scheduler{
				MetricsFormat: MetricsFormatVLLM,
				MetricNames: &MetricNames{
					Waiting: "w", Running: "r", KVCacheUsage: "kv", LoRAInfo: "lora", CacheConfig: "cc", BlockSizeLabel: "bs",
				},
				MetricsPath:    "/stats/metrics",
				ScrapeInterval: "20ms", ScrapeTimeout: "50ms", Staleness: "100ms",
				Weights:       &Weights{Queue: w(2), KVCache: w(2), Prefix: w(3), LoRA: w(1), InFlight: w(1), Session: w(2), Latency: w(2), Placement: w(1)},
				Saturation:    &Saturation{QueueDepth: w(5), KVCacheUsage: w(0.8)},
				Fallbacks:     &fallbacks,
				SessionHeader: "x-session-id",
				PrefixCache:   &PrefixCache{BlockChars: 64, MaxBlocks: 128, LRUCapacity: 1000},
				LoRA:          &LoRA{Adapters: []string{"sql-lora"}},
				Feedback:      &Feedback{LatencyHalfLife: "5s", Cooldown: "500ms", MaxCooldown: "5s", LoadReports: &yes},
			},
		}},
		Backends:   []Backend{{Name: "openai"}, {Name: "azure"}},
		Limits:     Limits{MaxRequestBodyBytes: 1 << 20},
		Objectives: map[string]int{"batch": -1},
		Costs: []cost.Spec{
			{MetadataKey: "llm_total_token", Type: cost.TotalToken},
			{MetadataKey: "llm_cheap_input", Type: cost.CEL, CEL: "input_tokens - cached_input_tokens"},
		},
		Usage:        Usage{RequestUsage: &yes},
		GenAIMetrics: GenAIMetrics{Address: "0.0.0.0:9464"},
		SharedState:  SharedState{Relay: "inflow-controlplane.inflow-system:18002"},
	}
}

// wireJSON is c as it crosses the wire (ToStruct), as indented JSON with
// sorted keys.
func wireJSON(t *testing.T, c *Config) []byte {
	t.Helper()
	s, err := ToStruct(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(s.AsMap(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func readCompat(t *testing.T, v int) []byte {
	t.Helper()
	data, err := os.ReadFile(compatFile(v))
	if err != nil {
		t.Fatalf("%v: every schema version keeps its file (run make update-goldens for the current one)", err)
	}
	return data
}

func TestCompatFileOfThisVersion(t *testing.T) {
	golden.Assert(t, compatFile(SchemaVersion), wireJSON(t, compatReference()))
	files := map[string]bool{}
	for v := 1; v <= SchemaVersion; v++ {
		files[compatFile(v)] = true
	}
	golden.Orphans(t, compatDir, files)
}

// fieldPaths lists the JSON paths of every field of t ("pools[].name"),
// with the schema version that added it.
func fieldPaths(t reflect.Type, prefix string, out map[string]int) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		since := 1
		if s := f.Tag.Get(sinceTag); s != "" {
			since, _ = strconv.Atoi(s)
		}
		p := joinPath(prefix, name)
		out[p] = since
		if f.Type.Kind() != reflect.Map {
			fieldPaths(f.Type, p, out)
		}
	}
}

// docPaths lists the paths fieldPaths names that a JSON document uses.
func docPaths(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := joinPath(prefix, k)
			out[p] = true
			if k != "objectives" {
				docPaths(e, p, out)
			}
		}
	case []any:
		for _, e := range v {
			docPaths(e, prefix+"[]", out)
		}
	}
}

func decodeCompat(t *testing.T, data []byte) any {
	t.Helper()
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// Each field is in the file of the version that added it and in no older
// one: a field added without its since tag, or without its version bump,
// fails here.
func TestEveryFieldIsInTheFileOfItsVersion(t *testing.T) {
	fields := map[string]int{}
	fieldPaths(reflect.TypeFor[Config](), "", fields)
	used := make([]map[string]bool, SchemaVersion+1)
	for v := 1; v <= SchemaVersion; v++ {
		used[v] = map[string]bool{}
		docPaths(decodeCompat(t, readCompat(t, v)), "", used[v])
	}
	for p, since := range fields {
		if since < 1 || since > SchemaVersion {
			t.Errorf("%s: since %d, want 1..%d (SchemaVersion)", p, since, SchemaVersion)
			continue
		}
		if !used[since][p] {
			t.Errorf("%s (since %d) is not in %s: set it in compatReference, or tag it since:\"%d\" if it is new",
				p, since, compatFile(since), SchemaVersion)
		}
		for v := 1; v < since; v++ {
			if used[v][p] {
				t.Errorf("%s is tagged since %d but the version %d file has it", p, since, v)
			}
		}
	}
}

// A new filter reads every older (and its own) version's config strictly:
// nothing ignored, nothing refused.
func TestNewFilterReadsOlderConfigs(t *testing.T) {
	for v := 1; v <= SchemaVersion; v++ {
		c, err := Parse(readCompat(t, v))
		if err != nil {
			t.Errorf("version %d file: %v", v, err)
			continue
		}
		if len(c.Ignored()) > 0 || c.Version != v {
			t.Errorf("version %d file: version %d, ignored %v", v, c.Version, c.Ignored())
		}
	}
}

// Filters of every older version read each newer version's config,
// ignoring only fields newer than themselves, and what they keep is a
// config they read strictly.
func TestOldFiltersReadNewerConfigs(t *testing.T) {
	fields := map[string]int{}
	fieldPaths(reflect.TypeFor[Config](), "", fields)
	for v := 2; v <= SchemaVersion; v++ {
		for reader := 1; reader < v; reader++ {
			c, err := parseAs(readCompat(t, v), reader)
			if err != nil {
				t.Errorf("a version %d filter refuses the version %d file: %v", reader, v, err)
				continue
			}
			for _, p := range c.Ignored() {
				if since := fields[stripIndexes(p)]; since <= reader {
					t.Errorf("a version %d filter ignored %s (since %d) of the version %d file", reader, p, since, v)
				}
			}
			kept, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseAs(kept, reader); err != nil {
				t.Errorf("a version %d filter's view of the version %d file: %v", reader, v, err)
			}
		}
	}
}

func stripIndexes(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '[' {
			j := strings.IndexByte(path[i:], ']')
			b.WriteString("[]")
			i += j
			continue
		}
		b.WriteByte(path[i])
	}
	return b.String()
}

// A version filters do not know yet: what a control plane upgraded first
// sends to the Envoys it has not upgraded.
const futureConfig = `{
  "version": 999,
  "future_top": {"x": 1},
  "models": [{"name": "m", "pool": "p", "future_model": true}],
  "pools": [{"name": "p", "endpoints": ["10.0.0.1:8000"], "future_pool": "x",
             "scheduler": {"staleness": "1s", "future_sched": 1, "weights": {"queue": 5, "future_weight": 1}}}],
  "limits": {"max_request_body_bytes": 4096, "future_limit": 1}
}`

func TestThisFilterReadsANewerConfig(t *testing.T) {
	c, err := Parse([]byte(futureConfig))
	if err != nil {
		t.Fatalf("a newer config with fields this filter does not know must be read: %v", err)
	}
	want := []string{"future_top", "limits.future_limit", "models[0].future_model", "pools[0].future_pool",
		"pools[0].scheduler.future_sched", "pools[0].scheduler.weights.future_weight"}
	got := slices.Sorted(slices.Values(c.Ignored()))
	if !slices.Equal(got, want) {
		t.Errorf("ignored %q, want %q", got, want)
	}
	// What it knows takes effect.
	r := c.Pools[0].Scheduler.Resolve()
	if c.Version != 999 || c.Limits.EffectiveMaxRequestBodyBytes() != 4096 || r.Weights.Queue != 5 || r.Staleness.String() != "1s" ||
		c.Pools[0].Endpoints[0] != "10.0.0.1:8000" {
		t.Errorf("known fields lost: %+v, scheduler %+v", c, r)
	}
}

func TestANewerConfigIsStillValidated(t *testing.T) {
	_, err := Parse([]byte(strings.Replace(futureConfig, `"staleness": "1s"`, `"staleness": "soon"`, 1)))
	if err == nil {
		t.Fatal("an invalid value in a known field of a newer config was accepted")
	}
	for _, want := range []string{"pools[0].scheduler.staleness", "schema version 999", fmt.Sprintf("this filter's %d", SchemaVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestUnknownFieldsAreRefusedInKnownVersions(t *testing.T) {
	for _, version := range []string{``, `"version": 1,`, fmt.Sprintf(`"version": %d,`, SchemaVersion)} {
		js := `{` + version + `"models": [{"name": "m", "backend": "b"}], "backends": [{"name": "b", "region": "eu"}], "Limits": {}}`
		_, err := Parse([]byte(js))
		if err == nil {
			t.Fatalf("%s: unknown fields accepted", js)
		}
		for _, want := range []string{`backends[0].region: unknown field "region"`, `Limits: unknown field "Limits"`, "refuses unknown fields"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", js, err, want)
			}
		}
	}
}

func TestVersionMustBeAWholeNumber(t *testing.T) {
	for _, v := range []string{`0`, `-1`, `1.5`, `"2"`, `null`} {
		_, err := Parse([]byte(`{"version": ` + v + `, "models": [{"name": "m", "backend": "b"}], "backends": [{"name": "b"}]}`))
		if err == nil || !strings.Contains(err.Error(), "version: must be a whole number") {
			t.Errorf("version %s: error %v", v, err)
		}
	}
}

// The writer stamps its version; a config that says its version keeps it.
func TestWriterStampsItsVersion(t *testing.T) {
	c := &Config{Models: []Model{{Name: "m", Backend: "b"}}, Backends: []Backend{{Name: "b"}}}
	s, err := ToStruct(c)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.GetFields()["version"].GetNumberValue(); v != SchemaVersion || c.Version != 0 {
		t.Errorf("written version %v (input left at %d), want %d without changing the input", v, c.Version, SchemaVersion)
	}
}

// The emulation of older filters: a field tagged since N is unknown to a
// reader of an older version.
func TestSinceTagHidesNewerFieldsFromOlderReaders(t *testing.T) {
	type inner struct {
		Old string `json:"old"`
		New string `json:"new" since:"3"`
	}
	type doc struct {
		A     string  `json:"a"`
		Later *inner  `json:"later" since:"2"`
		List  []inner `json:"list"`
	}
	raw := func() map[string]any {
		return map[string]any{"a": "x", "later": map[string]any{"old": "y"}, "list": []any{map[string]any{"old": "z", "new": "w"}}}
	}
	for reader, want := range map[int][]string{1: {"later", "list[0].new"}, 2: {"list[0].new"}, 3: nil} {
		if got := unknownFields(raw(), reflect.TypeFor[doc](), reader, ""); !slices.Equal(got, want) {
			t.Errorf("reader %d: unknown %q, want %q", reader, got, want)
		}
	}
}
