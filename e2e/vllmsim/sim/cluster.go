package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Cluster is a set of simulated servers started together.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts n servers with the same options. If opts.Listen has a non-zero
// port P, they listen on P, P+1, ..., P+n-1 of its host; otherwise each gets an
// ephemeral port. On error every server already started is closed.
func StartCluster(ctx context.Context, n int, opts Options) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("vllmsim cluster: need at least 1 server, got %d", n)
	}
	all := make([]Options, n)
	listen := opts.withDefaults().Listen
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("vllmsim cluster: listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("vllmsim cluster: listen %q: port is not a number", listen)
	}
	for i := range all {
		all[i] = opts
		all[i].LoRAs = append([]string(nil), opts.LoRAs...)
		if port != 0 {
			all[i].Listen = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
		if opts.Seed != 0 {
			all[i].Seed = opts.Seed + uint64(i) // distinct but reproducible fail-rate draws
		}
	}
	return StartEach(ctx, all)
}

// StartEach starts one server per Options, for clusters of unlike servers (different
// adapters, speeds or sizes). On error every server already started is closed.
func StartEach(ctx context.Context, opts []Options) (*Cluster, error) {
	c := &Cluster{}
	for i, o := range opts {
		s, err := Start(ctx, o)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("vllmsim cluster: server %d: %w", i, err), c.Close())
		}
		c.Servers = append(c.Servers, s)
	}
	return c, nil
}

// Addrs returns the servers' host:port addresses in start order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr()
	}
	return out
}

// Close closes every server and returns their errors joined.
func (c *Cluster) Close() error {
	var errs []error
	for _, s := range c.Servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
