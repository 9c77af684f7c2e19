package kube

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Default lease timings, client-go's usual ones: a dead leader's status
// duties move to another replica within about 15 s. Serving xDS never
// waits for this: every replica serves from its own informers.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Election elects, through a coordination.k8s.io Lease, the one replica
// that writes status and Events, so replicas never fight over them.
type Election struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity is this replica's (the pod name).
	Identity string
	// Timings; zero means the defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	leading atomic.Bool
}

// Leading reports whether this replica holds the lease now.
func (e *Election) Leading() bool { return e.leading.Load() }

// run contends for the lease until ctx ends, running lead while it holds
// it; lead's context ends when leadership is lost.
func (e *Election) run(ctx context.Context, kc kubernetes.Interface, log *slog.Logger, lead func(context.Context)) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     kc.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:          lock,
			LeaseDuration: orDefault(e.LeaseDuration, DefaultLeaseDuration),
			RenewDeadline: orDefault(e.RenewDeadline, DefaultRenewDeadline),
			RetryPeriod:   orDefault(e.RetryPeriod, DefaultRetryPeriod),
			// A replica shutting down hands the lease over at once.
			ReleaseOnCancel: true,
			Name:            e.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					e.leading.Store(true)
					log.Info("leading: this replica writes status", "lease", e.Namespace+"/"+e.Name, "identity", e.Identity)
					lead(ctx)
				},
				OnStoppedLeading: func() {
					e.leading.Store(false)
					log.Info("no longer leading", "identity", e.Identity)
				},
				OnNewLeader: func(id string) {
					if id != e.Identity {
						log.Debug("status is written by another replica", "leader", id)
					}
				},
			},
		})
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
