package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/internal/adminhttp"
)

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// kubeOptions are the flags of the Kubernetes source; they matter only
// when the config file has a kubernetes section.
type kubeOptions struct {
	kubeconfig      string
	leaseNamespace  string
	leaseName       string
	identity        string
	syncCredentials bool
}

func (k *kubeOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else the in-cluster service account)")
	fs.StringVar(&k.leaseNamespace, "leader-election-namespace", "", "namespace of the status writer's Lease (default $POD_NAMESPACE, else the pod's own)")
	fs.StringVar(&k.leaseName, "leader-election-id", "inflow-controlplane-leader", "name of the Lease electing the one replica that writes status")
	fs.StringVar(&k.identity, "identity", "", "this replica's name in the Lease (default $POD_NAME, else the hostname)")
	fs.BoolVar(&k.syncCredentials, "sync-credentials", false,
		"run as the Envoy pod's sidecar: write the API keys of BackendSecurityPolicies' Secrets as SDS files into kubernetes.credentials_dir, and serve nothing")
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return cfg, nil
}

// kubeSource is the Kubernetes source when the config asks for one (nil
// otherwise); published runs after each build is served.
func kubeSource(o options, pub kube.Publisher, log *slog.Logger, published func(*kube.Result)) (*kube.Source, error) {
	loaded, err := configfile.Load(o.config)
	if err != nil {
		return nil, err
	}
	if loaded.Config.Kubernetes == nil {
		return nil, nil
	}
	cfg, err := restConfig(o.kube.kubeconfig)
	if err != nil {
		return nil, err
	}
	election := &kube.Election{Namespace: o.kube.leaseNamespace, Name: o.kube.leaseName, Identity: o.kube.identity}
	if election.Namespace == "" {
		election.Namespace = podNamespace()
	}
	if election.Identity == "" {
		election.Identity = os.Getenv("POD_NAME")
	}
	if election.Identity == "" {
		if election.Identity, err = os.Hostname(); err != nil {
			return nil, err
		}
	}
	return kube.New(kube.Options{
		Rest: cfg, Publisher: pub, Log: log, Election: election, OwnNamespace: podNamespace(),
		OnPublished: func(_ uint64, res *kube.Result) { published(res) },
	}, loaded.Config)
}

func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// syncCredentials runs the credential sidecar, from the control plane's
// config file when given (its kubernetes section) or for the pod's own
// namespace and the default folder.
func syncCredentials(ctx context.Context, o options, log *slog.Logger) error {
	k := &spec.Kubernetes{}
	if o.config != "" {
		loaded, err := configfile.Load(o.config)
		if err != nil {
			return err
		}
		if k = loaded.Config.Kubernetes; k == nil {
			return errors.New("--sync-credentials: the config has no kubernetes section")
		}
	}
	namespaces, err := kube.Namespaces(k, podNamespace())
	if err != nil {
		return err
	}
	cfg, err := restConfig(o.kube.kubeconfig)
	if err != nil {
		return err
	}
	adminLis, err := net.Listen("tcp", o.admin)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	health := admin.NewHandler(&admin.Metrics{}, log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- adminhttp.Serve(ctx, adminLis, health) }()
	log.Info("syncing API keys", "namespaces", namespaces, "dir", k.EffectiveCredentialsDir(), "admin", adminLis.Addr().String())
	sync := &kube.CredentialSync{Rest: cfg, Namespaces: namespaces, Dir: k.EffectiveCredentialsDir(), Log: log, OnSynced: health.SetReady}
	err = sync.Run(ctx)
	cancel()
	return errors.Join(err, <-served)
}
