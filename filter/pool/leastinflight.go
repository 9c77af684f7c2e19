package pool

import "math/rand/v2"

// LeastInFlight returns the endpoint with the fewest requests in flight from
// this Envoy, breaking ties at random, or nil when the pool is empty.
// math/rand/v2's top-level functions use a per-thread source: no shared lock.
func LeastInFlight(endpoints []*Endpoint) *Endpoint {
	var best *Endpoint
	var bestLoad int64
	ties := 0
	for _, e := range endpoints {
		load := e.InFlight()
		switch {
		case best == nil || load < bestLoad:
			best, bestLoad, ties = e, load, 1
		case load == bestLoad:
			// Reservoir sampling keeps each tied endpoint equally likely.
			ties++
			if rand.IntN(ties) == 0 {
				best = e
			}
		}
	}
	return best
}
