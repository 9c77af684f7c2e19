package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The Kubernetes tests run Inflow as a cluster does: a real kube-apiserver
// and etcd (envtest) hold pods whose status.podIP are distinct loopback
// addresses where vLLM simulators listen, an InferencePool selecting them
// and AIGatewayRoutes naming it; the control plane in Kubernetes mode feeds
// an xDS-driven host running the real inflow.so; the OpenAI client sends
// through it. Assertions are on what reached the simulators.

// kubeAwait bounds waits for the API server, the control plane and the
// host together; generous, since a loaded machine must make these tests
// slow, never flaky. It is not a performance bound.
const kubeAwait = 60 * time.Second

// headerSent carries a request's send time (ns since the test's epoch), so
// a simulator can tell requests sent after a config update from earlier
// ones still in flight.
const headerSent = "x-test-sent"

// podServer is the vLLM simulator behind one pod's IP and port, recording
// the send time of every request that reached it.
type podServer struct {
	*sim.Server
	mu   sync.Mutex
	sent []time.Duration
	// auth is the Authorization header of the last request that reached
	// it (an external backend's injected key).
	auth string
}

// lastAuth is the Authorization header the last request arrived with.
func (p *podServer) lastAuth() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auth
}

// requests is how many requests reached the server so far.
func (p *podServer) requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sent)
}

// sentAfter counts requests that reached the server and were sent after t.
func (p *podServer) sentAfter(t time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sent {
		if s > t {
			n++
		}
	}
	return n
}

// kubeStack is one namespace of the test cluster served through a host.
type kubeStack struct {
	t    *testing.T
	ns   *kubetest.Namespace
	host *harness.Host
	cp   *local.Server
	// epoch is the zero of the send times the simulators record.
	epoch time.Time

	mu     sync.Mutex
	builds []kubeBuild
}

// kubeBuild is one snapshot the control plane served: its version and the
// filter config in it.
type kubeBuild struct {
	version uint64
	cfg     *config.Config
}

// startKubeStack starts the control plane watching ns with the given
// kubernetes section (namespaces filled in) and a host driven by it.
// election makes the control plane write status.
func startKubeStack(t *testing.T, ns *kubetest.Namespace, section map[string]any, election bool) *kubeStack {
	t.Helper()
	return startKubeStackWith(t, ns, section, election, harness.XDSHostOptions{})
}

// startKubeStackWith is startKubeStack with the host's options (its
// mounts, say); Log is set here.
func startKubeStackWith(t *testing.T, ns *kubetest.Namespace, section map[string]any, election bool, hostOpts harness.XDSHostOptions) *kubeStack {
	t.Helper()
	s := &kubeStack{t: t, ns: ns, epoch: time.Now()}
	k := map[string]any{"namespaces": []string{ns.Name},
		// fresh metrics at once, so saturation and picks follow the servers
		"scheduler": map[string]any{"scrape_interval": "20ms", "staleness": "2s"}}
	for key, v := range section {
		k[key] = v
	}
	cfg := map[string]any{
		"listeners":  []any{map[string]any{"name": "public", "address": "127.0.0.1", "port": 10000}},
		"kubernetes": k,
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	opts := &local.Kubernetes{Rest: ns.Rest, OnPublished: s.published}
	if election {
		opts.Election = &kube.Election{Namespace: ns.Name, Name: "inflow", Identity: "only"}
	}
	hostOpts.Log = log
	h, cp, err := harness.StartInflowKubernetesHost(t.Context(), t.TempDir(), cfg, opts, hostOpts)
	if err != nil {
		t.Fatalf("start the control plane and host: %v", err)
	}
	s.host, s.cp = h, cp
	t.Cleanup(func() {
		exited, err := h.Exited()
		h.Close()
		if exited {
			t.Errorf("envoyhost exited during the test: %v\n%s", err, h.Stderr())
		} else if t.Failed() {
			t.Logf("envoyhost log:\n%s\nxDS client: %+v", h.Stderr(), h.Agent().Status())
		}
	})
	return s
}

func (s *kubeStack) published(version uint64, res *kube.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.builds); n > 0 && s.builds[n-1].version == version {
		return // unchanged: nothing new went out
	}
	s.builds = append(s.builds, kubeBuild{version: version, cfg: res.Config.FilterConfig()})
}

// applied waits until the host runs a snapshot whose filter config
// satisfies cond, and returns that config. It waits for the control
// plane's latest build to satisfy cond, then for the host to have taken
// that version's filter config and endpoints (ECDS is the last type of an
// ordered ADS snapshot: the listeners, routes and clusters of that version
// are in place before it).
func (s *kubeStack) applied(what string, cond func(*config.Config) bool) *config.Config {
	s.t.Helper()
	var b kubeBuild
	if err := poll.Until(s.t.Context(), kubeAwait, what+" (control plane)", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.builds) == 0 {
			return false
		}
		b = s.builds[len(s.builds)-1]
		return cond(b.cfg)
	}); err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		var last *config.Config
		if len(s.builds) > 0 {
			last = s.builds[len(s.builds)-1].cfg
		}
		s.t.Fatalf("%v; last filter config: %+v", err, last)
	}
	ctx, cancel := context.WithTimeout(s.t.Context(), kubeAwait)
	defer cancel()
	if err := s.host.Agent().Await(ctx, hostAt(b.version, len(b.cfg.Pools) > 0)); err != nil {
		s.t.Fatalf("%s: the host never took version %d: %v", what, b.version, err)
	}
	return b.cfg
}

// clustersAccepted waits until the host accepted the clusters of the
// latest build (or a later one): a cluster it refused (NACK) is absent
// until the control plane sends it again.
func (s *kubeStack) clustersAccepted(what string) {
	s.t.Helper()
	s.mu.Lock()
	v := s.builds[len(s.builds)-1].version
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.t.Context(), kubeAwait)
	defer cancel()
	if err := s.host.Agent().Await(ctx, func(st hostxds.Status) bool {
		n, err := strconv.ParseUint(st.Accepted[resource.ClusterType], 10, 64)
		return err == nil && n >= v
	}); err != nil {
		s.t.Fatalf("%s: the host never took the clusters of version %d: %v", what, v, err)
	}
}

// hostAt holds once the host accepted the filter config of version v or a
// later one and, with pools, their endpoints: a new pool's cluster warms
// until its EDS arrives, which the host (as Envoy) asks for only after it
// took the cluster, so that comes after the rest of the snapshot.
func hostAt(v uint64, pools bool) func(hostxds.Status) bool {
	at := func(st hostxds.Status, typ string) bool {
		n, err := strconv.ParseUint(st.Accepted[typ], 10, 64)
		return err == nil && n >= v
	}
	return func(st hostxds.Status) bool {
		return at(st, resource.ExtensionConfigType) && (!pools || at(st, resource.EndpointType))
	}
}

// since is the time since the stack's epoch: what headerSent carries.
func (s *kubeStack) since() time.Duration { return time.Since(s.epoch) }

// podServer starts a simulator serving model at ip:port for a pod.
func (s *kubeStack) podServer(model, ip string, port int32, loras ...string) *podServer {
	s.t.Helper()
	p := &podServer{}
	srv, err := sim.Start(s.t.Context(), sim.Options{
		Model: model, LoRAs: loras, Listen: net.JoinHostPort(ip, strconv.Itoa(int(port))),
		TTFTBase: time.Millisecond, PrefillPerToken: time.Microsecond, ITL: time.Microsecond,
		OnRequest: func(r *http.Request) {
			d, _ := strconv.ParseInt(r.Header.Get(headerSent), 10, 64)
			p.mu.Lock()
			p.sent = append(p.sent, time.Duration(d))
			p.auth = r.Header.Get("authorization")
			p.mu.Unlock()
		},
	})
	if err != nil {
		s.t.Fatalf("simulator on %s:%d: %v", ip, port, err)
	}
	s.t.Cleanup(func() { _ = srv.Close() })
	p.Server = srv
	return p
}

// chat sends one chat request through the host, stamped with its send
// time; the prompt is unique, so prefix-cache affinity does not pin every
// request to one pod.
func (s *kubeStack) chat(ctx context.Context, model string, opts ...option.RequestOption) (*openai.ChatCompletion, error) {
	opts = append(opts, option.WithHeader(headerSent, strconv.FormatInt(int64(s.since()), 10)))
	c := client(s.host)
	return c.Chat.Completions.New(ctx, chatParams(model, fmt.Sprintf("hello %d", rand.Uint64())), opts...)
}

// chatOK sends n chat requests, each of which must succeed.
func (s *kubeStack) chatOK(model string, n int, opts ...option.RequestOption) {
	s.t.Helper()
	for i := range n {
		if _, err := s.chat(testContext(s.t), model, opts...); err != nil {
			s.t.Fatalf("request %d of %d for %s: %v", i+1, n, model, errorBody(err))
		}
	}
}

// chatUntil sends requests (each must succeed) until cond holds.
func (s *kubeStack) chatUntil(what, model string, cond func() bool) {
	s.t.Helper()
	var failed error
	err := poll.Until(s.t.Context(), kubeAwait, what, func() bool {
		if _, err := s.chat(testContext(s.t), model); err != nil {
			failed = err
			return true
		}
		return cond()
	})
	if failed != nil {
		s.t.Fatalf("%s: a request failed: %v", what, failed)
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// counts is how many requests each server got.
func counts(servers ...*podServer) []int {
	out := make([]int, len(servers))
	for i, p := range servers {
		out[i] = p.requests()
	}
	return out
}

// grew lists which servers got requests between two counts.
func grew(before, after []int) []bool {
	out := make([]bool, len(before))
	for i := range before {
		out[i] = after[i] > before[i]
	}
	return out
}

// endpointsAre: pool (a kube.PoolName) exists with exactly these endpoints.
func endpointsAre(pool string, want ...string) func(*config.Config) bool {
	want = slices.Sorted(slices.Values(want))
	return func(c *config.Config) bool {
		for _, p := range c.Pools {
			if p.Name == pool {
				return slices.Equal(p.Endpoints, want)
			}
		}
		return false
	}
}

// hasModel: the filter config serves model.
func hasModel(model string) func(*config.Config) bool {
	return func(c *config.Config) bool {
		return slices.ContainsFunc(c.Models, func(m config.Model) bool { return m.Name == model })
	}
}

func hostPort(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

// freeLoopbackPort is a port free on 127.0.0.1, used for every pod: a
// pool's target port is the same for all its pods, and each pod has its
// own address.
func freeLoopbackPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// errorBody is err with the body of an API error, which names the cause.
func errorBody(err error) string {
	var e *openai.Error
	if errors.As(err, &e) {
		return err.Error() + ": " + e.RawJSON()
	}
	return err.Error()
}
