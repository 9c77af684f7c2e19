// Package e2e drives the real filter libraries through envoyhost, the C
// program that plays Envoy's side of the golang filter ABI, with the official
// OpenAI Go client in front and fake model servers behind.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

const buildTimeout = 5 * time.Minute

func TestMain(m *testing.M) {
	// Never skip: a test run without the host or the filters is a failure.
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	err := harness.Build(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot build the filters and envoyhost (needs gcc, make, pkg-config, libevent-dev, libjansson-dev):\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
