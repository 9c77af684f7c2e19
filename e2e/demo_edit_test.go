package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/inflow-gateway/inflow/e2e/demo"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// editedModel is the model an edit adds: an alias of the base model, so
// the simulators serve it.
const editedModel = "llama-edited"

// startEditableDemo starts the demo on a copy of e2e/demo/controlplane.yaml
// (the file docs/deploy.md tells users to edit) and returns the copy's path.
func startEditableDemo(tb testing.TB) (*demo.Stack, string) {
	tb.Helper()
	src, err := demo.DefaultConfig()
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	path := filepath.Join(dir, "controlplane.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	tb.Cleanup(cancel)
	s, err := demo.Start(ctx, demo.Options{Config: path, Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start the demo: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close the demo: %v", err)
		}
	})
	return s, path
}

// withModel returns the config text with editedModel added (an alias of
// base) or without it.
func withModel(raw []byte, base string, add bool) []byte {
	entry := fmt.Appendf(nil, "  - name: %s\n    pool: llama\n    rewrite:\n      - {model: %s, weight: 100}\n", editedModel, base)
	raw = bytes.Replace(raw, entry, nil, 1)
	if add {
		raw = bytes.Replace(raw, []byte("\nmodels:\n"), append([]byte("\nmodels:\n"), entry...), 1)
	}
	return raw
}

// editAtomic writes the file as most editors save: a temporary beside it,
// then a rename over it.
func editAtomic(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".controlplane.yaml.swp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

func listsModel(ctx context.Context, c openai.Client, name string) (bool, error) {
	page, err := c.Models.List(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(page.Data, func(m openai.Model) bool { return m.ID == name }), nil
}

// TestDemoFollowsEdits: `make run` serves the file users edit; an edit
// saved by rename (most editors) and one written in place (truncate, then
// write: the control plane may see the empty file first and must refuse it)
// both reach GET /v1/models, while chat completions and model lists run
// without one failing.
func TestDemoFollowsEdits(t *testing.T) {
	t.Parallel()
	s, path := startEditableDemo(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	c := s.Client()

	var failed, sent atomic.Int64
	var firstErr atomic.Value
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				var err error
				if w == 0 {
					_, err = c.Models.List(loadCtx)
				} else {
					_, err = c.Chat.Completions.New(loadCtx, openai.ChatCompletionNewParams{
						Model:    s.Config.Base,
						Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
					})
				}
				if loadCtx.Err() != nil {
					return
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}

	check := func(want bool) time.Duration {
		t.Helper()
		start := time.Now()
		poll.Eventually(t, fmt.Sprintf("GET /v1/models lists %s: %v", editedModel, want), func() bool {
			ok, err := listsModel(ctx, c, editedModel)
			return err == nil && ok == want
		})
		return time.Since(start)
	}
	editAtomic(t, path, withModel(raw, s.Config.Base, true))
	added := check(true)
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    editedModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil || len(resp.Choices) == 0 {
		t.Errorf("chat completion of the edited-in model: %v", err)
	}
	if err := os.WriteFile(path, withModel(raw, s.Config.Base, false), 0o600); err != nil {
		t.Fatal(err)
	}
	removed := check(false)
	stopLoad()
	wg.Wait()
	t.Logf("edit visible in GET /v1/models after %v (add, renamed) and %v (remove, in place); %d requests under the edits", added, removed, sent.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across the edits; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if sent.Load() == 0 {
		t.Error("no request ran during the edits")
	}
	// The host applied the edits without refusing one and without draining
	// its listener (only routes and the filter config changed).
	if n := stat(t, s.Host, "envoyhost.config_pushes_rejected"); n != 0 {
		t.Errorf("the host refused %d config pushes", n)
	}
	if n := stat(t, s.Host, "listener.public.downstream_cx_drained"); n != 0 {
		t.Errorf("%d connections drained by edits of models only", n)
	}
}

// BenchmarkDemoEditVisible measures how long an edit of the demo's config
// file takes to show in GET /v1/models (file watch, control-plane reload
// and push, the host's ECDS/RDS swap), one add or remove per op.
func BenchmarkDemoEditVisible(b *testing.B) {
	s, path := startEditableDemo(b)
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	c := s.Client()
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		add := i%2 == 0
		editAtomic(b, path, withModel(raw, s.Config.Base, add))
		if err := poll.Until(ctx, poll.DefaultTimeout, "edit visible", func() bool {
			ok, err := listsModel(ctx, c, editedModel)
			return err == nil && ok == add
		}); err != nil {
			b.Fatal(err)
		}
	}
}
