package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	if err := Until(context.Background(), time.Minute, "third call", func() bool { calls++; return calls == 3 }); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("cond called %d times, want 3: polling must stop at the first true", calls)
	}
}

func TestUntilNamesWhatWasNotReached(t *testing.T) {
	err := Until(context.Background(), 5*time.Millisecond, "the moon", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "the moon") {
		t.Fatalf("error %v, want it to name what was awaited", err)
	}
}

func TestUntilStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Until(ctx, time.Hour, "never", func() bool { return false })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

type fakeTB struct{ failed string }

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, _ ...any) { f.failed = format }

func TestEventuallyPassesWithoutFailing(t *testing.T) {
	var tb fakeTB
	n := 0
	Eventually(&tb, "two calls", func() bool { n++; return n >= 2 })
	if tb.failed != "" {
		t.Fatalf("Eventually failed: %s", tb.failed)
	}
}
