package scheduler

import (
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
)

// Set is the schedulers of one parsed config, one per pool. Build it when
// the config is parsed and Release it from the config's Destroy hook:
// pools the next config keeps retain their metrics, in-flight counts and
// prefix index because the next config retains them before this one lets
// go.
type Set struct {
	byName map[string]*Scheduler
	leases []*pool.Lease
}

// Open retains every pool of c (validated) on m and builds its scheduler.
func Open(m *pool.Manager, c *config.Config) *Set {
	s := &Set{byName: make(map[string]*Scheduler, len(c.Pools))}
	for _, p := range c.Pools {
		r := p.Scheduler.Resolve()
		opts := ScrapeOptions(r)
		opts.Relay = c.SharedState.Relay
		lease := m.Retain(p.Name, p.Endpoints, opts, r.LRUCapacity)
		s.leases = append(s.leases, lease)
		s.byName[p.Name] = New(lease, r)
	}
	return s
}

// Scheduler returns the named pool's scheduler, nil when the config has no
// such pool.
func (s *Set) Scheduler(pool string) *Scheduler { return s.byName[pool] }

// Schedulers lists every pool's scheduler, for stats export.
func (s *Set) Schedulers() map[string]*Scheduler { return s.byName }

// Release gives back every pool lease. Safe to call more than once.
func (s *Set) Release() {
	for _, l := range s.leases {
		l.Release()
	}
}

// ScrapeOptions maps resolved settings to the pool's scrape options,
// applying metric-name overrides to the built-in set.
func ScrapeOptions(r config.ResolvedScheduler) pool.ScrapeOptions {
	names, _ := pool.MetricNamesFor(r.MetricsFormat) // custom starts empty
	o := r.MetricNames
	override := func(dst *[]string, name string) {
		if name != "" {
			*dst = []string{name}
		}
	}
	override(&names.Waiting, o.Waiting)
	override(&names.Running, o.Running)
	override(&names.KVCacheUsage, o.KVCacheUsage)
	override(&names.LoRAInfo, o.LoRAInfo)
	if o.CacheConfig != "" {
		names.CacheConfig = []string{o.CacheConfig}
		names.BlockSizeLabel = o.BlockSizeLabel
	} else if o.BlockSizeLabel != "" {
		names.BlockSizeLabel = o.BlockSizeLabel
	}
	return pool.ScrapeOptions{
		Interval:  r.ScrapeInterval,
		Timeout:   r.ScrapeTimeout,
		Staleness: r.Staleness,
		Jitter:    pool.DefaultJitter,
		Path:      r.MetricsPath,
		Names:     names,
	}
}
