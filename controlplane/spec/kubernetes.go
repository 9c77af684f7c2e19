package spec

import (
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/inflow-gateway/inflow/filter/config"
)

// DefaultCredentialsDir is where the secret-sync sidecar writes API keys
// inside the Envoy pod (an emptyDir shared by the two containers).
const DefaultCredentialsDir = "/var/run/inflow/credentials"

// Kubernetes turns on the Kubernetes source: models, pools, objectives and
// external backends then also come from the API server (InferencePool,
// Pods, InferenceObjective, AIGatewayRoute, AIServiceBackend,
// BackendSecurityPolicy) in these namespaces, merged with whatever this
// file lists itself. The file keeps what Kubernetes does not hold:
// listeners, the filter's library path, limits and defaults.
type Kubernetes struct {
	// Namespaces to watch; empty means the control plane's own (the
	// manifests deploy Inflow beside the InferencePools it serves).
	Namespaces []string `json:"namespaces,omitempty"`
	// Gateways, when set, limits the AIGatewayRoutes served to those whose
	// parentRefs name one of these Gateways, as "namespace/name" (the
	// Gateway this Inflow stands in for). Empty serves every route.
	Gateways []string `json:"gateways,omitempty"`
	// Scheduler is the endpoint-picking settings of every InferencePool;
	// nil means the filter's defaults.
	Scheduler *config.Scheduler `json:"scheduler,omitempty"`
	// CredentialsDir is where Envoy reads backend API keys (SDS files the
	// secret-sync sidecar writes); defaults to DefaultCredentialsDir.
	CredentialsDir string `json:"credentials_dir,omitempty"`
	// WriteStatus, when false, leaves the objects' status alone (e.g. while
	// the Envoy AI Gateway controller still runs beside Inflow); default true.
	WriteStatus *bool `json:"write_status,omitempty"`
}

// EffectiveCredentialsDir is CredentialsDir with its default applied.
func (k *Kubernetes) EffectiveCredentialsDir() string {
	if k.CredentialsDir == "" {
		return DefaultCredentialsDir
	}
	return k.CredentialsDir
}

// StatusEnabled reports whether the leader writes status and Events.
func (k *Kubernetes) StatusEnabled() bool { return k.WriteStatus == nil || *k.WriteStatus }

func validateKubernetes(k *Kubernetes) []error {
	const p = "kubernetes"
	var errs []error
	seen := map[string]bool{}
	for i, ns := range k.Namespaces {
		f := fmt.Sprintf("%s.namespaces[%d]", p, i)
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, config.FieldErrorf(f, "%q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
		}
		if seen[ns] {
			errs = append(errs, config.FieldErrorf(f, "duplicate namespace %q", ns))
		}
		seen[ns] = true
	}
	for i, g := range k.Gateways {
		ns, name, ok := strings.Cut(g, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, config.FieldErrorf(fmt.Sprintf("%s.gateways[%d]", p, i), "%q is not namespace/name of a Gateway", g))
		}
	}
	if d := k.CredentialsDir; d != "" && !path.IsAbs(d) {
		errs = append(errs, config.FieldErrorf(p+".credentials_dir", "must be an absolute path inside the Envoy container, got %q", d))
	}
	// The filter validates the settings where they land, once per pool;
	// checking them here names this field instead.
	if k.Scheduler != nil {
		probe := config.Config{Pools: []config.Pool{{Name: "probe", Scheduler: k.Scheduler}}}
		if err := probe.Validate(); err != nil {
			errs = append(errs, config.FieldErrorf(p+".scheduler", "%v", strings.ReplaceAll(err.Error(), "pools[0].scheduler", "scheduler")))
		}
	}
	return errs
}
