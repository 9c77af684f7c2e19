// Package adminhttp serves a binary's admin endpoints (health, metrics)
// until its context ends, shared by inflow-controlplane and inflow-epp.
package adminhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// shutdownGrace bounds how long a scrape in flight may delay exit.
const shutdownGrace = 2 * time.Second

// Serve serves h on lis until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, lis net.Listener, h http.Handler) error {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		done <- s.Shutdown(sctx)
	}()
	if err := s.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return <-done
}
