package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// CredentialSync is the secret-sync sidecar of the Envoy pod: it turns the
// API-key Secrets that BackendSecurityPolicies name into the SDS files
// Envoy's credential injector reads (CONTRACTS.md item 3), so keys reach
// Envoy without the control plane or xDS ever holding them. It watches each
// Secret by name (a list/watch with a metadata.name field selector), so
// its RBAC can name exactly those Secrets.
type CredentialSync struct {
	Rest       *rest.Config
	Namespaces []string
	// Dir is the folder Envoy reads (an emptyDir shared with the Envoy
	// container, ideally medium: Memory).
	Dir string
	Log *slog.Logger
	// OnSynced, if set, runs once the policies are listed (readiness).
	OnSynced func()

	mu      sync.Mutex
	secrets map[types.NamespacedName]context.CancelFunc
	kick    chan struct{}
}

// Run syncs until ctx ends.
func (s *CredentialSync) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	kc, err := kubernetes.NewForConfig(s.Rest)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	dc, err := dynamic.NewForConfig(s.Rest)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	_, _, policies, _ := discover(kc.Discovery(), s.Log)
	if policies.Resource == "" {
		return errors.New("credentials: BackendSecurityPolicies are not served; install the Envoy AI Gateway CRDs")
	}
	s.secrets = map[types.NamespacedName]context.CancelFunc{}
	s.kick = make(chan struct{}, 1)
	var listers []cache.GenericLister
	for _, ns := range s.Namespaces {
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dc, 0, ns, nil)
		inf := f.ForResource(policies)
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { s.changed() }, UpdateFunc: func(any, any) { s.changed() }, DeleteFunc: func(any) { s.changed() },
		}); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		listers = append(listers, inf.Lister())
		f.Start(ctx.Done())
		if !allTrue(f.WaitForCacheSync(ctx.Done())) {
			return fmt.Errorf("credentials: policies did not sync: %w", context.Cause(ctx))
		}
	}
	s.changed()
	if s.OnSynced != nil {
		s.OnSynced()
	}
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for _, stop := range s.secrets {
				stop()
			}
			s.mu.Unlock()
			return nil
		case <-s.kick:
			s.follow(ctx, kc, wanted(listers, s.Log))
		}
	}
}

func (s *CredentialSync) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// wanted are the Secrets the APIKey policies name.
func wanted(listers []cache.GenericLister, log *slog.Logger) map[types.NamespacedName]bool {
	out := map[types.NamespacedName]bool{}
	for _, l := range listers {
		objs, err := l.List(labels.Everything())
		if err != nil {
			log.Warn("credentials: list policies", "err", err)
			continue
		}
		for _, o := range objs {
			n, err := APIKeySecret(o.(*unstructured.Unstructured))
			if err != nil {
				continue // the control plane reports it on the route
			}
			out[n] = true
		}
	}
	return out
}

// follow starts a watch per newly wanted Secret and stops (and deletes the
// file of) each no longer wanted one.
func (s *CredentialSync) follow(ctx context.Context, kc kubernetes.Interface, want map[types.NamespacedName]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, stop := range s.secrets {
		if !want[n] {
			stop()
			delete(s.secrets, n)
			s.remove(n)
		}
	}
	for n := range want {
		if _, ok := s.secrets[n]; ok {
			continue
		}
		// The SDS file first, at once: Envoy rejects a cluster whose SDS
		// file is missing, while a missing key file is only a 401 until
		// the key arrives. The control plane pushes the backend after its
		// own coalescing delay, so this write normally wins the race.
		if err := s.writeSDS(n); err != nil {
			s.Log.Error("credentials: write", "secret", n.String(), "err", err)
			continue
		}
		sctx, stop := context.WithCancel(ctx)
		s.secrets[n] = stop
		f := kubeinformers.NewSharedInformerFactoryWithOptions(kc, 0, kubeinformers.WithNamespace(n.Namespace),
			kubeinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", n.Name).String()
			}))
		inf := f.Core().V1().Secrets().Informer()
		name := n
		write := func(obj any) {
			if sec, ok := obj.(*corev1.Secret); ok {
				s.write(name, sec)
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: write, UpdateFunc: func(_, cur any) { write(cur) }, DeleteFunc: func(any) { s.removeKey(name) },
		}); err != nil {
			s.Log.Error("credentials: watch", "secret", n.String(), "err", err)
			continue
		}
		f.Start(sctx.Done())
	}
}

// write replaces the key file atomically (write, then rename), so Envoy
// never reads half a key.
func (s *CredentialSync) write(n types.NamespacedName, sec *corev1.Secret) {
	key := strings.TrimSpace(string(sec.Data[apiKeySecretKey]))
	if key == "" {
		s.Log.Warn("credentials: Secret has no apiKey", "secret", n.String())
		s.removeKey(n)
		return
	}
	if err := replaceFile(s.Dir, KeyFile(s.Dir, n), []byte(key)); err != nil {
		s.Log.Error("credentials: write", "secret", n.String(), "err", err)
		return
	}
	s.Log.Info("credentials: key written", "secret", n.String(), "file", KeyFile(s.Dir, n))
}

func (s *CredentialSync) writeSDS(n types.NamespacedName) error {
	data, err := SDSFile(CredentialName(n), KeyFile(s.Dir, n))
	if err != nil {
		return err
	}
	return replaceFile(s.Dir, CredentialFile(s.Dir, n), data)
}

func replaceFile(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Chmod(0o400), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

func (s *CredentialSync) removeKey(n types.NamespacedName) {
	if err := os.Remove(KeyFile(s.Dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.Log.Error("credentials: remove", "file", KeyFile(s.Dir, n), "err", err)
	}
}

// remove drops both files of a Secret no policy names any more.
func (s *CredentialSync) remove(n types.NamespacedName) {
	s.removeKey(n)
	if err := os.Remove(CredentialFile(s.Dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.Log.Error("credentials: remove", "file", CredentialFile(s.Dir, n), "err", err)
	}
}

// SDSFile is the file Envoy's path-based SDS reads: a DiscoveryResponse
// holding one Secret named name whose generic_secret is the key file (the
// shape CONTRACTS.md item 3 fixes).
func SDSFile(name, keyFile string) ([]byte, error) {
	secret, err := anypb.New(&tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: keyFile}},
		}},
	})
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{Indent: "  "}.Marshal(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{secret}})
}
