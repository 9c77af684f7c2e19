// Package poll is the one way Inflow's tests and benchmark commands wait for
// background work (a scrape, a stats export, a config push, a goroutine
// reaching a state): check a condition repeatedly, with a deadline, instead
// of sleeping for a guessed time. The wait backs off from 100µs to 20ms, so
// a condition that holds at once costs almost nothing and a slow one does
// not spin a core of a shared machine.
//
// Tests call Eventually; code that must return an error (a benchmark
// command) calls Until. It is importable from unit tests in filter/ and
// controlplane/, from e2e tests and from e2e commands alike, and imports
// nothing but the standard library.
package poll

import (
	"context"
	"fmt"
	"time"
)

// DefaultTimeout is how long Eventually waits. It is generous on purpose:
// what tests wait for normally takes milliseconds, and a loaded CI machine
// should make a test slow, never flaky. It is not a performance bound.
const DefaultTimeout = 30 * time.Second

const (
	firstInterval = 100 * time.Microsecond
	maxInterval   = 20 * time.Millisecond
)

// Until calls cond until it returns true, then returns nil. It returns an
// error naming what when timeout passes first, or ctx's error when ctx ends.
func Until(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	wait := firstInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for !cond() {
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s: not reached within %s", what, timeout)
		}
		timer.Reset(min(wait, time.Until(deadline)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-timer.C:
		}
		wait = min(2*wait, maxInterval)
	}
	return nil
}

// TB is the part of testing.TB that Eventually needs; *testing.T and
// *testing.B satisfy it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Eventually fails t unless cond holds within DefaultTimeout.
func Eventually(t TB, what string, cond func() bool) {
	t.Helper()
	if err := Until(context.Background(), DefaultTimeout, what, cond); err != nil {
		t.Fatalf("timed out waiting: %v", err)
	}
}
