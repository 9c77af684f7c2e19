package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

// stack starts and stops the processes of the setups.
type stack struct {
	ctx     context.Context
	dir     string
	workers int
	backend *harness.Backend
	closers []func()
}

func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func (s *stack) subdir(name string) string {
	d := filepath.Join(s.dir, fmt.Sprint(len(s.closers), "-", name))
	if err := os.MkdirAll(d, 0o700); err != nil {
		log.Fatal(err)
	}
	return d
}

// host starts envoyhost with opts (bodies up to 4 MiB buffered).
func (s *stack) host(name string, opts harness.HostOptions, extra ...*harness.Process) setup {
	opts.Concurrency, opts.BufferLimit = s.workers, 4<<20
	h, err := harness.StartHost(s.ctx, s.subdir("host"), opts)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	s.closers = append(s.closers, h.Close)
	st := setup{name: name, base: "http://" + h.Addr, cpu: []func() time.Duration{h.CPUTime}}
	procs := []interface{ Exited() (bool, error) }{h}
	for _, p := range extra {
		st.cpu = append(st.cpu, p.CPUTime)
		procs = append(procs, p)
	}
	st.alive = func() error {
		for _, p := range procs {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("a process of %q exited: %v", name, err)
			}
		}
		return nil
	}
	return st
}

// inflowEPP starts inflow-epp on a Unix socket and a host whose ext_proc
// client uses it in the EPP's mode (full-duplex streamed bodies).
func (s *stack) inflowEPP(name string) setup {
	e, err := harness.StartInflowEPP(s.ctx, s.subdir("inflow-epp"), filterConfig(s.backend.Addr))
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	s.closers = append(s.closers, e.Close)
	return s.host(name, harness.ExtProcHost(e.Target, harness.FullDuplex), e.Process)
}
