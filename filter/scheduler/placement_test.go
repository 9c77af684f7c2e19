package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
)

// Scores depend on the prompt's first block and the endpoint alone: the
// same on every replica, whichever other candidates are there, in [0,1).
func TestPlacementScorerIsAFunctionOfPromptAndEndpoint(t *testing.T) {
	cs := cands(make([]pool.Metrics, 6)...)
	s := NewPlacementScorer(endpointsOf(cs))
	cycle := func(first string) *Cycle {
		in := &Input{Model: "m", Prompt: prompt(first + strings.Repeat(" rest of the prompt", 20))}
		c := &Cycle{Input: in}
		c.hashes = HashPrompt(nil, &c.block, in, DefaultBlockChars, DefaultMaxBlocks)
		return c
	}
	a := score(s, cycle(strings.Repeat("a", DefaultBlockChars)), cs)
	again := score(NewPlacementScorer(endpointsOf(cs)), cycle(strings.Repeat("a", DefaultBlockChars)), cs)
	inDelta(t, "another replica", again, a)
	for i, v := range a {
		if v < 0 || v >= 1 {
			t.Errorf("score[%d] = %v, want [0,1)", i, v)
		}
	}
	// A candidate filtered out changes nobody else's score.
	sub := score(s, cycle(strings.Repeat("a", DefaultBlockChars)), cs[2:])
	inDelta(t, "fewer candidates", sub, a[2:])
	// The rest of the prompt does not matter; the first block does.
	c := cycle(strings.Repeat("a", DefaultBlockChars))
	c.hashes[len(c.hashes)-1] ^= 1
	inDelta(t, "other tail", score(s, c, cs), a)
	if b := score(s, cycle(strings.Repeat("b", DefaultBlockChars)), cs); argmax(b) == argmax(a) && b[argmax(b)] == a[argmax(a)] {
		t.Errorf("another first block scored the same: %v", b)
	}
}

func endpointsOf(cs []Candidate) []*pool.Endpoint {
	eps := make([]*pool.Endpoint, len(cs))
	for i, c := range cs {
		eps[i] = c.Endpoint
	}
	return eps
}

func argmax(v []float64) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// Two replicas with nothing in common (own managers, no relay) send each
// new prompt to the same endpoint when the pool is idle, and different
// first blocks spread over the pool; with the weight at 0 (the default)
// there is no such scorer.
func TestPlacementMakesReplicasAgreeWithoutTalking(t *testing.T) {
	w := 2.0
	cfg := &config.Scheduler{Weights: &config.Weights{Placement: &w}}
	a, aEps := testPool(t, 8, cfg)
	b, bEps := testPool(t, 8, cfg)
	idle := make([]pool.Metrics, 8)
	setMetrics(aEps, idle...)
	setMetrics(bEps, idle...)
	used := map[string]bool{}
	for i := range 40 {
		in := Input{Model: "m", Prompt: prompt(fmt.Sprintf("application %d says: %s", i, strings.Repeat("x", 200)))}
		var ra, rb Result
		if err := a.Pick(&in, &ra); err != nil {
			t.Fatal(err)
		}
		if err := b.Pick(&in, &rb); err != nil {
			t.Fatal(err)
		}
		if ra.Endpoints[0].Addr != rb.Endpoints[0].Addr {
			t.Errorf("prompt %d: replica a picked %s, replica b %s", i, ra.Endpoints[0].Addr, rb.Endpoints[0].Addr)
		}
		used[ra.Endpoints[0].Addr] = true
	}
	if len(used) < 5 {
		t.Errorf("40 applications went to %d of 8 endpoints", len(used))
	}
	off, _ := testPool(t, 2, nil)
	for _, ws := range off.scorers {
		if _, ok := ws.Scorer.(*PlacementScorer); ok {
			t.Error("placement scorer on by default")
		}
	}
}
