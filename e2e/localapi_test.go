package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// The official client's models.retrieve against the real filter: the
// model object for a configured model (ids with a slash too, which the
// client escapes), OpenAI's 404 for any other.
func TestRetrieveModelWithTheOpenAIClient(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	cfg := inflowConfig(0, b)
	cfg["models"] = append(cfg["models"].([]any), map[string]any{"name": "meta-llama/Llama-3.1-8B-Instruct", "pool": "p1", "owned_by": "meta"})
	h := startInflowHost(t, cfg)
	c := client(h)
	for id, owner := range map[string]string{"llama": "inflow", "meta-llama/Llama-3.1-8B-Instruct": "meta"} {
		m, err := c.Models.Get(testContext(t), id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if m.ID != id || m.OwnedBy != owner || m.Created == 0 || string(m.Object) != "model" {
			t.Errorf("%s: %+v", id, m)
		}
	}
	_, err := c.Models.Get(testContext(t), "gpt-5")
	if e := apiError(t, err, http.StatusNotFound); e.Code != "model_not_found" {
		t.Errorf("code %q", e.Code)
	}
	noBackendGot(t, b)
}

// A GET on an inference path is 405 with Allow, in OpenAI's shape, and
// counted; it never reaches a model server.
func TestWrongMethodThroughTheHost(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startInflowHost(t, inflowConfig(0, b))
	resp, err := http.Get(h.URL("/v1/chat/completions"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" ||
		json.Unmarshal(body, &e) != nil || e.Error.Code != "method_not_allowed" {
		t.Fatalf("status %d allow %q body %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	if got := stat(t, h, protocol.StatRejected405); got != 1 {
		t.Errorf("%s = %d", protocol.StatRejected405, got)
	}
	noBackendGot(t, b)
}
