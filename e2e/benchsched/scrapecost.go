package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// scrapeCostSamples is how many scrapes the CPU cost is averaged over.
const scrapeCostSamples = 2000

// measureScrapeCPU returns the CPU time this process spends per /metrics
// scrape of a simulator that has served the workload's adapters: the
// server rendering and writing the page plus the client reading it (both
// run here, and nothing else does while it runs).
func measureScrapeCPU(ctx context.Context) (time.Duration, error) {
	s, err := sim.Start(ctx, simOptions())
	if err != nil {
		return 0, err
	}
	defer s.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	// Fill the histograms and LoRA series as the benchmark's traffic does.
	w := newWorkload(1)
	for range 8 {
		c, body, _ := w.next()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/chat/completions", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		if _, err := measure(client, req, true); err != nil {
			return 0, err
		}
		w.done(c)
	}
	scrape := func() error {
		resp, err := client.Get(s.URL() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/metrics: status %d", resp.StatusCode)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := scrape(); err != nil { // warm the connection
		return 0, err
	}
	before, err := processCPU()
	if err != nil {
		return 0, err
	}
	for range scrapeCostSamples {
		if err := scrape(); err != nil {
			return 0, err
		}
	}
	after, err := processCPU()
	if err != nil {
		return 0, err
	}
	return (after - before) / scrapeCostSamples, nil
}

func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
