// Command benchhop measures the hop Inflow removes (make bench-hop): the
// same chat requests through envoyhost with (a) a pass-through filter,
// (b) inflow.so deciding in process, (c) the host's ext_proc client
// sending headers and body to inflow-epp over a Unix socket, and (d) the
// same client to the Inference Extension's own EPP (over TCP, the only
// transport it serves), for several body sizes at a fixed concurrency. It
// reports the latency each setup adds over (a) and the CPU per request of
// every process involved (host, and picker where there is one), then the
// ratio of the in-process cost to the ext_proc hop's.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

const sectionTitle = "## ext_proc hop benchmark"

// requestOnlySetup is the row that compares like for like with (c).
const requestOnlySetup = "(b′) host + inflow.so, request path only"

// setup is one way through the host.
type setup struct {
	name  string
	base  string                 // URL of the host
	cpu   []func() time.Duration // CPU clocks of its processes
	alive func() error           // nil while its processes run
}

func main() {
	out := flag.String("out", "", "markdown file whose \""+sectionTitle+"\" section is replaced with the results")
	duration := flag.Duration("duration", 4*time.Second, "measured time per cell and round")
	rounds := flag.Int("rounds", 3, "rounds per cell; the table shows the median round (by p50)")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up per cell and round")
	clients := flag.Int("clients", 32, "concurrent keep-alive clients")
	workers := flag.Int("concurrency", 2, "envoyhost --concurrency")
	sizes := flag.String("sizes", "1024,65536,1048576", "request body sizes in bytes, comma-separated")
	withEPP := flag.Bool("epp", true, "also run (d), the Inference Extension's EPP against a real kube-apiserver")
	flag.Parse()
	log.SetFlags(0)

	ctx := context.Background()
	if err := harness.Build(ctx); err != nil {
		log.Fatal(err)
	}
	backend, err := harness.StartBackend("bench")
	if err != nil {
		log.Fatal(err)
	}
	backend.NoRecord = true
	defer backend.Close()
	dir, err := os.MkdirTemp("", "benchhop")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s := &stack{ctx: ctx, dir: dir, workers: *workers, backend: backend}
	defer s.close()
	setups := []setup{
		s.host("(a) host + passthrough.so", harness.HostOptions{PluginName: harness.PassthroughPlugin, DefaultUpstream: backend.Addr}),
		s.host("(b) host + inflow.so", harness.HostOptions{PluginName: protocol.PluginName, Config: filterConfig(backend.Addr)}),
		// (b′): the same filter built without its response path (make
		// build-filter-request-only), the work (c)'s picker does.
		s.host(requestOnlySetup, harness.HostOptions{PluginName: protocol.PluginName,
			Library: harness.Out("inflow-request-only.so"), Config: filterConfig(backend.Addr)}),
		s.inflowEPP("(c) host + ext_proc -> inflow-epp (Unix socket)"),
	}
	if *withEPP {
		setups = append(setups, s.gieEPP("(d) host + ext_proc -> GIE EPP (TCP)"))
	}
	loadBefore := harness.LoadAverage()
	m := matrix{setups: setups, sizes: parseSizes(*sizes), clients: *clients,
		rounds: *rounds, warmup: *warmup, duration: *duration}
	results := m.measure()
	load := fmt.Sprintf("load average %s before, %s after", loadBefore, harness.LoadAverage())
	section := render(results, m, *workers, load)
	fmt.Print(section)
	if *out != "" {
		if err := harness.ReplaceSection(*out, sectionTitle, section); err != nil {
			log.Fatal(err)
		}
	}
}

// filterConfig serves model "llama", rewritten to "llama-3-8b", from a pool
// of the one backend: the same decision in (b), (c) and (d).
func filterConfig(backend string) map[string]any {
	return map[string]any{
		"models": []any{map[string]any{"name": "llama", "pool": "p1",
			"rewrite": []any{map[string]any{"model": "llama-3-8b"}}}},
		"pools": []any{map[string]any{"name": "p1", "endpoints": []string{backend}}},
	}
}

func parseSizes(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 128 {
			log.Fatalf("-sizes: %q is not a body size in bytes (at least 128)", f)
		}
		out = append(out, n)
	}
	return out
}

var machine = fmt.Sprintf("%d CPUs (%s/%s, %s)", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
