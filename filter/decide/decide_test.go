package decide

import (
	"net/http"
	"slices"
	"testing"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/split"
)

func testRouter(t *testing.T, cfg string) *router.Router {
	t.Helper()
	c, err := config.Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	m := pool.NewManager()
	t.Cleanup(m.Close)
	r, err := router.New(c, m, split.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestOnHeaders(t *testing.T) {
	r := testRouter(t, `{"models":[{"name":"llama","pool":"p"}],"pools":[{"name":"p","endpoints":["10.0.0.1:1"]}],
		"limits":{"max_request_body_bytes":100}}`)
	for _, tc := range []struct {
		method, path, cl string
		end              bool
		action           Action
		status           int
		inference        bool
	}{
		{"POST", "/v1/chat/completions", "", false, Buffer, 0, true},
		{"POST", "/v1/completions?x=1", "50", false, Buffer, 0, true},
		{"POST", "/v1/chat/completions", "101", false, Reply, http.StatusRequestEntityTooLarge, true},
		{"POST", "/v1/chat/completions", "", true, Reply, http.StatusBadRequest, true},
		{"GET", "/v1/chat/completions", "", true, Reply, http.StatusMethodNotAllowed, false},
		{"GET", "/v1/models", "", true, Reply, http.StatusOK, false},
		{"GET", "/v1/models/llama", "", true, Reply, http.StatusOK, false},
		{"GET", "/v1/models/gpt", "", true, Reply, http.StatusNotFound, false},
		{"DELETE", "/v1/models", "", true, Reply, http.StatusMethodNotAllowed, false},
		{"GET", "/health", "", true, Pass, 0, false},
		{"POST", "/v1/other", "", false, Pass, 0, false},
	} {
		d := OnHeaders(r, tc.method, tc.path, tc.cl, tc.end)
		if d.Action != tc.action || d.Reply.Status != tc.status || d.Inference != tc.inference {
			t.Errorf("%s %s cl=%q end=%v: got %+v", tc.method, tc.path, tc.cl, tc.end, d)
		}
		if d.Reply.Status == http.StatusMethodNotAllowed && d.Reply.Allow == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

func TestBodyDestinationForms(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"override_host", "10.0.0.1:1,10.0.0.2:1"}, {"original_dst", "10.0.0.1:1"},
	} {
		r := testRouter(t, `{"models":[{"name":"llama","pool":"p"}],"pools":[{"name":"p","destination":"`+tc.mode+`",
			"endpoints":["10.0.0.1:1","10.0.0.2:1"],"scheduler":{"fallbacks":1}}]}`)
		var scratch [MaxDestinations]*pool.Endpoint
		rt, err := Body(r, request.ChatCompletions, []byte(`{"model":"llama","messages":[]}`), nil, scratch[:0])
		if err != nil {
			t.Fatal(err)
		}
		rt.Primary().Release()
		if rt.Destination == "" || (tc.mode == "original_dst" && rt.Metadata != rt.Destination) ||
			(tc.mode == "override_host" && len(rt.Metadata) != len(tc.want)) {
			t.Errorf("%s: header %q metadata %q", tc.mode, rt.Destination, rt.Metadata)
		}
	}
}

func TestRejectionStat(t *testing.T) {
	for status, want := range map[int]string{200: "", 400: protocol.StatRejected400, 404: protocol.StatRejected404,
		405: protocol.StatRejected405, 413: protocol.StatRejected413, 429: protocol.StatRejected429,
		503: protocol.StatRejected503, 500: protocol.StatInternalErrors} {
		if got := RejectionStat(status); got != want {
			t.Errorf("%d: %q, want %q", status, got, want)
		}
	}
}

// TestBodyNamesTheSplitBackend: a split model's route carries the picked
// backend (the x-inflow-backend header both adapters set) and no pool
// destination; a model without refs carries none.
func TestBodyNamesTheSplitBackend(t *testing.T) {
	r := testRouter(t, `{"models":[{"name":"gpt","backend":"a","backend_refs":[{"backend":"a"},{"backend":"b","model":"gpt-b"}]},
		{"name":"plain","backend":"a"}],"backends":[{"name":"a"},{"name":"b"}]}`)
	seen := map[string]bool{}
	for range 100 {
		rt, err := Body(r, request.ChatCompletions, []byte(`{"model":"gpt","messages":[]}`), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rt.Destination != "" || (rt.Backend == "b") != (rt.ServedModel == "gpt-b") {
			t.Fatalf("backend %q served %q destination %q", rt.Backend, rt.ServedModel, rt.Destination)
		}
		seen[rt.Backend] = true
	}
	if !seen["a"] || !seen["b"] || len(seen) != 2 {
		t.Errorf("100 requests named %v, want both a and b", seen)
	}
	if rt, err := Body(r, request.ChatCompletions, []byte(`{"model":"plain","messages":[]}`), nil, nil); err != nil || rt.Backend != "" {
		t.Errorf("a model without refs: backend %q, %v", rt.Backend, err)
	}
	if !slices.Contains(RoutingHeaders[:], protocol.HeaderBackend) {
		t.Error("a client could choose the split's backend: x-inflow-backend is not a routing header")
	}
}
