package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c config)
	}{
		{"issue flags", []string{"--listen", "127.0.0.1:9000", "--model", "llama", "--lora", "a, b", "--max-loras", "2",
			"--max-num-seqs", "8", "--kv-blocks", "100", "--block-size", "32", "--ttft-base", "5ms",
			"--prefill-per-token", "10us", "--itl", "2ms", "--max-tokens-default", "7", "--fail-rate", "0.25"}, false,
			func(t *testing.T, c config) {
				o := c.opts
				if c.isCluster || o.Listen != "127.0.0.1:9000" || o.Model != "llama" || !slices.Equal(o.LoRAs, []string{"a", "b"}) ||
					o.MaxLoRAs != 2 || o.MaxNumSeqs != 8 || o.KVBlocks != 100 || o.BlockSize != 32 ||
					o.TTFTBase != 5*time.Millisecond || o.PrefillPerToken != 10*time.Microsecond || o.ITL != 2*time.Millisecond ||
					o.MaxTokensDefault != 7 || o.FailRate != 0.25 {
					t.Errorf("parsed %+v", c)
				}
			}},
		{"defaults", []string{"--model", "m"}, false, func(t *testing.T, c config) {
			if c.opts.MaxNumSeqs != sim.DefaultMaxNumSeqs || c.opts.ITL != sim.DefaultITL || c.opts.LoRAs != nil {
				t.Errorf("defaults not applied: %+v", c.opts)
			}
		}},
		{"cluster", []string{"cluster", "-n", "4", "--model", "m"}, false, func(t *testing.T, c config) {
			if !c.isCluster || c.n != 4 {
				t.Errorf("cluster=%v n=%d", c.isCluster, c.n)
			}
		}},
		{"cluster needs a server", []string{"cluster", "-n", "0", "--model", "m"}, true, nil},
		{"-n only with cluster", []string{"-n", "2", "--model", "m"}, true, nil},
		{"stray argument", []string{"--model", "m", "extra"}, true, nil},
		{"bad duration", []string{"--model", "m", "--itl", "fast"}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseArgs(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestRunCluster starts the command's cluster mode, reads the printed addresses, checks
// each server answers, then stops it the way a signal would.
func TestRunCluster(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"cluster", "-n", "2", "--listen", "127.0.0.1:0", "--model", "m", "--log-level", "error"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var addrs []string
	for len(addrs) < 2 && sc.Scan() {
		addrs = append(addrs, strings.TrimSpace(sc.Text()))
	}
	if len(addrs) != 2 {
		t.Fatalf("printed addresses %v", addrs)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, a := range addrs {
		resp, err := client.Get("http://" + a + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s /v1/models = %d", a, resp.StatusCode)
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
