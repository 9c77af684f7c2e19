package main

import (
	"fmt"
	"strings"
	"time"
)

func render(results [][]cell, m matrix, workers int, load string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", sectionTitle)
	fmt.Fprintf(&b, "Command: `make bench-hop` (`go run ./e2e/cmd/benchhop -out docs/benchmarks.md`).\n\n")
	fmt.Fprintf(&b, "The same POST /v1/chat/completions (model `llama`, rewritten to `llama-3-8b`, one pool of one "+
		"fast fake backend) through envoyhost `--concurrency %d` with %d keep-alive clients; each cell is the "+
		"median of %d rounds of %v after %v of warm-up, the setups of a size taking turns. The ext_proc client "+
		"(e2e/testfilters/extproc) runs the EPP's processing mode: request headers SEND, request body "+
		"FULL_DUPLEX_STREAMED, nothing of the response (the hop measured is the request path's only; GIE's "+
		"manifests also stream the response body through the picker, which costs more). `added` is over (a); "+
		"`CPU / request` is the host's CPU plus the picker's (inflow-epp or the EPP) per request, warm-up "+
		"included; the client and the backend share the machine but are the same in every row. "+
		"Machine: %s, %s.\n\n", workers, m.clients, m.rounds, m.duration, m.warmup, machine, load)
	b.WriteString("| setup | body | p50 | p99 | added p50 | added p99 | CPU / request | added CPU | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range results {
		a := row[0]
		for i, c := range row {
			added := func(x, base time.Duration) string {
				if i == 0 {
					return "-"
				}
				return fmtDur(x - base)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", c.setup, fmtSize(c.size),
				fmtDur(c.p50), fmtDur(c.p99), added(c.p50, a.p50), added(c.p99, a.p99),
				fmtDur(c.cpuPerRq), added(c.cpuPerRq, a.cpuPerRq), c.errors)
		}
	}
	b.WriteString("\nHow to read it: at 32 clients on 2 cores every setup saturates the CPU, so latency is mostly " +
		"queueing and grows with the CPU a request costs; CPU per request is the steadier number. What each row adds " +
		"over (a): (b′) is Inflow's request path in process, the same work (c)'s picker does: buffering the body " +
		"(which the pass-through does not), copying it out of the host once, one parse, the pick, the model rewrite " +
		"written back as a drain and a prepend of the edited prefix, the routing headers and the envoy.lb metadata. " +
		"(b) is the shipped filter: (b′) plus its response path (usage accounting of the answer, token metadata, " +
		"GenAI metrics, the scheduler's latency feedback), which (c) and (d) do not run: inflow-epp passes response " +
		"phases through, and its ext_proc client sends none (for the same work (c) would need the client to send the " +
		"response headers and body, response_header_mode SEND and a BUFFERED or STREAMED response body, and inflow-epp " +
		"to run the usage accountant on them, a second round trip per response). (c) is the request path across the " +
		"hop: the same buffering, plus every body byte marshalled, sent over the socket and back, in gRPC frames, " +
		"through the test host's Go ext_proc client, whose own cost is probably above Envoy's C++ client's " +
		"(e2e/testfilters/extproc/README.md), and inflow-epp's. (d) against (c) is the EPP against inflow-epp " +
		"behind the same client (and TCP against a Unix socket: the EPP serves no Unix socket); the EPP's " +
		"kube-apiserver is not counted.\n")
	b.WriteString("\n" + ratioLine(results) + "\n")
	return b.String()
}

// ratioLine compares the in-process added cost with the hop's: (b′) and
// (c) do the same work, the request path; (b) adds its response path.
func ratioLine(results [][]cell) string {
	var same, full []string
	for _, row := range results {
		a, in, reqOnly, hop, ok := rows(row)
		if !ok {
			continue
		}
		cmp := func(x cell) string {
			return fmt.Sprintf("%s: CPU %s, p50 %s", fmtSize(a.size),
				ratio(x.cpuPerRq-a.cpuPerRq, hop.cpuPerRq-a.cpuPerRq), ratio(x.p50-a.p50, hop.p50-a.p50))
		}
		same, full = append(same, cmp(reqOnly)), append(full, cmp(in))
	}
	return "**In-process added cost / ext_proc hop's added cost, the same work (the request path): " +
		"((b′)−(a)) / ((c)−(a)), goal ≤ 0.10:** " + strings.Join(same, "; ") + ".\n\n" +
		"With the response path, which the hop does not run: ((b)−(a)) / ((c)−(a)): " + strings.Join(full, "; ") + "."
}

// rows finds (a), (b), (b′) and (c) in a size's row.
func rows(row []cell) (a, in, reqOnly, hop cell, ok bool) {
	if len(row) < 4 {
		return a, in, reqOnly, hop, false
	}
	return row[0], row[1], row[2], row[3], row[2].setup == requestOnlySetup
}

func ratio(num, den time.Duration) string {
	if den <= 0 {
		return "n/a (the hop added nothing measurable)"
	}
	return fmt.Sprintf("%.2f", float64(num)/float64(den))
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return fmt.Sprintf("−%.3f ms", float64(-d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func fmtSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
