package main

import (
	"context"
	"errors"
	"io"
	"sync"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// grpcStream is one request's ext_proc stream. Sends are queued and made
// by a goroutine, and answers arrive on a channel, so the worker thread
// never blocks on the network (Envoy's client is asynchronous too). The
// stream opens with the first message.
type grpcStream struct {
	cfg    *config
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []*extprocv3.ProcessingRequest
	closing bool // CloseSend after the queue
	wake    chan struct{}

	// in delivers the server's messages, then one error (io.EOF when the
	// server closed the stream) and is never closed.
	in chan received
}

type received struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

func openStream(cfg *config) *grpcStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &grpcStream{cfg: cfg, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), in: make(chan received, 16)}
	go s.run()
	return s
}

// send queues m.
func (s *grpcStream) send(m *extprocv3.ProcessingRequest) {
	s.mu.Lock()
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	s.signal()
}

// closeSend half-closes the stream once the queue is sent: no more
// messages, as Envoy does after the last response it expects.
func (s *grpcStream) closeSend() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.signal()
}

func (s *grpcStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close abandons the stream (the filter is done with the request).
func (s *grpcStream) close() { s.cancel() }

func (s *grpcStream) run() {
	stream, err := s.cfg.client.Process(s.ctx)
	if err != nil {
		s.deliver(received{err: err})
		return
	}
	inc(s.cfg.stats.streamsStarted)
	go s.receive(stream)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		batch, closing := s.queue, s.closing
		s.queue = nil
		s.mu.Unlock()
		for _, m := range batch {
			if err := stream.Send(m); err != nil {
				// The receiver sees the stream's real error.
				return
			}
			inc(s.cfg.stats.msgsSent)
		}
		if closing {
			_ = stream.CloseSend()
			return
		}
	}
}

func (s *grpcStream) receive(stream extprocv3.ExternalProcessor_ProcessClient) {
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			s.deliver(received{err: err})
			return
		}
		inc(s.cfg.stats.msgsReceived)
		if !s.deliver(received{resp: resp}) {
			return
		}
	}
}

func (s *grpcStream) deliver(r received) bool {
	select {
	case s.in <- r:
		return true
	case <-s.ctx.Done():
		return false
	}
}
