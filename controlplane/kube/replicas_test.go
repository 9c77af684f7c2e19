package kube_test

import (
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testReplicas: two control planes serve the same xDS from their own
// informers; only the lease holder writes status, and when it stops the
// other takes over.
func testReplicas(t *testing.T, f *fixture) {
	app := map[string]string{"app": "gemma2"}
	f.Pod("a", "127.0.0.41", app, true, nil)
	f.Pool("gemma2", app, 8000)
	f.Route(kubetest.RoutesGVR, "broken", kubetest.ModelRule("missing", kubetest.PoolRef("nope")))
	f.Route(kubetest.RoutesGVR, "good", kubetest.ModelRule("gemma-2-9b", kubetest.PoolRef("gemma2")))
	fast := func(id string) *kube.Election {
		return &kube.Election{Namespace: f.Name, Name: "inflow-controlplane", Identity: id,
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	}
	ea, eb := fast("a"), fast("b")
	a, b := f.controlPlane("", ea), f.controlPlane("", eb)
	pool := kube.PoolName(nsName(f.Name, "gemma2"))
	for _, cp := range []*controlPlane{a, b} {
		cp.await("each replica serves", endpointsAre(pool, ep("127.0.0.41", 8000)))
	}
	waitFor(t, "a leader", func() bool { return ea.Leading() || eb.Leading() })
	if ea.Leading() && eb.Leading() {
		t.Fatal("two leaders")
	}
	leader, follower, fe := a, b, eb
	if eb.Leading() {
		leader, follower, fe = b, a, ea
	}
	waitStatus(t, f, "broken", func(c []metav1.Condition) bool { return kubetest.FindCondition(c, "Accepted") != nil })
	if n := follower.Kube.StatusWrites(); n != 0 {
		t.Fatalf("the follower wrote status %d times", n)
	}
	if leader.Kube.StatusWrites() == 0 {
		t.Fatal("the leader wrote no status")
	}

	// The leader goes away; the follower takes the lease and writes.
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to lead", fe.Leading)
	f.SetReady("a", false)
	follower.await("still serving after the leader left", endpointsAre(pool))
	f.Pool("nope", app, 8000)
	waitStatus(t, f, "broken", func(c []metav1.Condition) bool {
		r := kubetest.FindCondition(c, "ResolvedRefs")
		return r != nil && r.Status == "True"
	})
	if follower.Kube.StatusWrites() == 0 {
		t.Fatal("the new leader wrote no status")
	}
}
