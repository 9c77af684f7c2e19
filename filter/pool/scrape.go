package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
)

// DefaultJitter spreads scrapes of many endpoints over the interval so they
// do not fire in lockstep. It is not a config setting; the configurable
// scrape defaults live in filter/config.
const DefaultJitter = 0.1

// maxMetricsBytes bounds one /metrics response; a vLLM page is ~100 KB.
const maxMetricsBytes = 8 << 20

// ScrapeOptions says how a pool's endpoints are scraped. Zero fields take
// the defaults of filter/config (and DefaultJitter).
type ScrapeOptions struct {
	Interval  time.Duration
	Timeout   time.Duration
	Staleness time.Duration
	// Jitter is the fraction of Interval by which each wait varies, 0..1.
	Jitter float64
	Path   string
	Names  MetricNames
	// Relay is the host:port of the state relay the pool's replicas share
	// placements and scrapes through (Sharing); empty: none.
	Relay string
	// Disabled stops scraping; metrics then come from SetMetrics only (tests
	// and simulations that feed state directly).
	Disabled bool
}

func (o ScrapeOptions) withDefaults() ScrapeOptions {
	if o.Interval <= 0 {
		o.Interval = config.DefaultScrapeInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = config.DefaultScrapeTimeout
	}
	if o.Staleness <= 0 {
		o.Staleness = config.DefaultStaleness
	}
	if o.Jitter < 0 || o.Jitter > 1 {
		o.Jitter = DefaultJitter
	}
	if o.Path == "" {
		o.Path = config.DefaultMetricsPath
	}
	if o.Names.Waiting == nil && o.Names.KVCacheUsage == nil {
		o.Names = VLLM
	}
	return o
}

// newScrapeClient returns the HTTP client of one endpoint's scraper: no
// proxy (pod addresses must not go through one from the environment), no
// compression (decompressing costs more CPU than the bytes saved on a pod
// network), and one kept-alive connection.
func newScrapeClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// scrapeLoop keeps ep's metrics current until ctx ends.
func (st *poolState) scrapeLoop(ctx context.Context, client *http.Client, ep *Endpoint, done chan<- struct{}) {
	defer close(done)
	var buf bytes.Buffer
	timer := time.NewTimer(0) // first scrape at once: a new pool needs numbers
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		opts := st.opts.Load()
		switch m := ep.Metrics(); {
		case m != nil && time.Since(m.LastScrape) < scrapeSkipAge(opts):
			// Another replica scraped it just now (only a relay's
			// snapshot can be this young here).
			st.counters.ScrapesSkipped.Add(1)
		default:
			m, err := scrape(ctx, client, ep, opts, &buf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				ep.scrapeErrors.Add(1)
				st.counters.ScrapeErrors.Add(1)
				break
			}
			st.share.offer(ep, m)
		}
		timer.Reset(jittered(opts.Interval, opts.Jitter))
	}
}

func jittered(d time.Duration, jitter float64) time.Duration {
	if jitter == 0 {
		return d
	}
	f := 1 + jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

var (
	errStatus    = errors.New("metrics: unexpected HTTP status")
	errNotFinite = errors.New("metrics: non-finite value")
)

// scrape fetches and parses ep's metrics once and publishes them.
func scrape(ctx context.Context, client *http.Client, ep *Endpoint, opts *ScrapeOptions, buf *bytes.Buffer) (*Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep.Addr+opts.Path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%w %d from %s", errStatus, resp.StatusCode, ep.Addr)
	}
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxMetricsBytes)); err != nil {
		return nil, err
	}
	m := new(Metrics)
	if err := ParseMetrics(buf.Bytes(), &opts.Names, m); err != nil {
		return nil, fmt.Errorf("%s: %w", ep.Addr, err)
	}
	// A NaN or infinite gauge would poison every comparison the scheduler
	// makes; such a scrape is an error and the old numbers age out.
	for _, v := range [...]float64{m.Waiting, m.Running, m.KVCacheUsage} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w from %s", errNotFinite, ep.Addr)
		}
	}
	m.ScrapedAt = time.Now()
	m.LastScrape = m.ScrapedAt
	ep.SetMetrics(m)
	return m, nil
}
