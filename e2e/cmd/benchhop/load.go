package main

import (
	"log"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

// cell is one setup at one body size, one round.
type cell struct {
	setup    string
	size     int
	served   int // requests answered 200 in the measured window
	errors   int
	p50, p99 time.Duration
	cpuPerRq time.Duration // CPU of the setup's processes per request
}

type matrix struct {
	setups           []setup
	sizes            []int
	clients, rounds  int
	warmup, duration time.Duration
}

// measure runs every setup at every size; the setups of one size take
// turns round by round, so load drift on the shared machine hits them
// alike. Each cell is the median round by p50.
func (m matrix) measure() [][]cell {
	var out [][]cell // [size][setup]
	for _, size := range m.sizes {
		body := chatBody(size)
		rounds := make([][]cell, len(m.setups))
		for range m.rounds {
			for i, s := range m.setups {
				c := run(s, body, m.clients, m.warmup, m.duration)
				if err := s.alive(); err != nil {
					log.Fatal(err)
				}
				log.Printf("%-50s %7d B  %6d req  p50 %-10v p99 %-10v CPU/req %-9v errors %d",
					s.name, size, c.served, c.p50, c.p99, c.cpuPerRq, c.errors)
				rounds[i] = append(rounds[i], c)
			}
		}
		row := make([]cell, len(m.setups))
		for i, rs := range rounds {
			slices.SortFunc(rs, func(a, b cell) int { return int(a.p50 - b.p50) })
			row[i] = rs[len(rs)/2]
		}
		out = append(out, row)
	}
	return out
}

// run keeps clients requests in flight for warmup+duration. Latencies
// count in the measured window; CPU is divided by every request of the
// run, warm-up included, since the clock ran for those too.
func run(s setup, body []byte, clients int, warmup, duration time.Duration) cell {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	cpu := func() (t time.Duration) {
		for _, f := range s.cpu {
			t += f()
		}
		return t
	}
	cpu0 := cpu()
	start := time.Now()
	from, stop := start.Add(warmup), start.Add(warmup+duration)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		all, errs int
		wg        sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			var local []time.Duration
			n, e := 0, 0
			for t0 := time.Now(); t0.Before(stop); t0 = time.Now() {
				err := harness.PostJSON(hc, s.base+"/v1/chat/completions", body)
				n++
				if t0.Before(from) {
					continue
				}
				if err != nil {
					e++
				} else {
					local = append(local, time.Since(t0))
				}
			}
			mu.Lock()
			latencies, all, errs = append(latencies, local...), all+n, errs+e
			mu.Unlock()
		})
	}
	wg.Wait()
	c := cell{setup: s.name, size: len(body), served: len(latencies), errors: errs}
	if all > 0 {
		c.cpuPerRq = (cpu() - cpu0) / time.Duration(all)
	}
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		c.p50, c.p99 = latencies[n/2], latencies[n*99/100]
	}
	return c
}

// chatBody is an OpenAI chat request of exactly size bytes.
func chatBody(size int) []byte {
	head, tail := `{"model":"llama","messages":[{"role":"user","content":"`, `"}]}`
	return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
}
