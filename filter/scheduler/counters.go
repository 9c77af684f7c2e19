package scheduler

import (
	"time"

	"github.com/inflow-gateway/inflow/filter/pool"
)

// Counters are the pool's event counters (shared by every config that
// holds the pool), for export as stats.
func (s *Scheduler) Counters() *pool.Counters { return s.counters }

// Staleness is how old an endpoint's metrics may be and still be trusted.
func (s *Scheduler) Staleness() time.Duration { return s.staleness }
