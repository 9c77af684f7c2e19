package kube

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
)

// refError is a reference Inflow could not follow: the AIGatewayRoute's
// ResolvedRefs condition carries its reason.
type refError struct {
	reason, msg string
}

func (e *refError) Error() string { return e.msg }

func refErrorf(reason, format string, args ...any) error {
	return &refError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Reasons of a False ResolvedRefs condition.
const (
	reasonBackendNotFound = "BackendNotFound"
	reasonInvalidKind     = "InvalidKind"
	reasonUnsupported     = "UnsupportedValue"
)

// objects indexes unstructured objects by namespace/name.
type objects map[types.NamespacedName]*unstructured.Unstructured

func index(us []*unstructured.Unstructured) objects {
	m := make(objects, len(us))
	for _, u := range us {
		m[types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}] = u
	}
	return m
}

// backendResolver turns AIServiceBackends into spec backends.
type backendResolver struct {
	services, egBackends objects
	// policies maps an AIServiceBackend to the BackendSecurityPolicies
	// that target it, in name order.
	policies map[types.NamespacedName][]*unstructured.Unstructured
	// policyNames holds every policy by its own name: a v1alpha1
	// AIServiceBackend names its policy, which then has no targetRefs.
	policyNames    objects
	credentialsDir string
}

func newBackendResolver(in *Inputs, credentialsDir string) *backendResolver {
	r := &backendResolver{
		services: index(in.Backends), egBackends: index(in.EGBackends),
		policies: map[types.NamespacedName][]*unstructured.Unstructured{}, policyNames: index(in.Policies), credentialsDir: credentialsDir,
	}
	for _, u := range in.Policies {
		var p backendSecurityPolicy
		if decodeSpec(u, &p) != nil {
			continue // reported when a backend it would target is resolved
		}
		for _, t := range p.TargetRefs {
			if t.Group == aiGatewayGroup && t.Kind == kindAIServiceBackend {
				n := types.NamespacedName{Namespace: u.GetNamespace(), Name: t.Name}
				r.policies[n] = append(r.policies[n], u)
			}
		}
	}
	for _, ps := range r.policies {
		slices.SortFunc(ps, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	}
	return r
}

// resolve builds the spec backend of AIServiceBackend n.
func (r *backendResolver) resolve(n types.NamespacedName) (spec.Backend, error) {
	u, ok := r.services[n]
	if !ok {
		return spec.Backend{}, refErrorf(reasonBackendNotFound, "AIServiceBackend %s not found", n)
	}
	var s aiServiceBackend
	if err := decodeSpec(u, &s); err != nil {
		return spec.Backend{}, refErrorf(reasonUnsupported, "%v", err)
	}
	if s.Schema.Name != "OpenAI" {
		return spec.Backend{}, refErrorf(reasonUnsupported,
			"AIServiceBackend %s: schema %q is not supported (Inflow sends the OpenAI API as it is; no provider translation)", n, s.Schema.Name)
	}
	br := s.BackendRef
	if deref(br.Group, "") != envoyGatewayGroup || deref(br.Kind, "") != kindBackend {
		return spec.Backend{}, refErrorf(reasonInvalidKind, "AIServiceBackend %s: backendRef must be a %s Backend", n, envoyGatewayGroup)
	}
	bn := types.NamespacedName{Namespace: deref(br.Namespace, n.Namespace), Name: br.Name}
	baseURL, err := r.baseURL(bn, s.Schema.Version)
	if err != nil {
		return spec.Backend{}, err
	}
	b := spec.Backend{Backend: config.Backend{Name: BackendName(n)}, BaseURL: baseURL}
	cred, err := r.credential(n, u, s)
	if err != nil {
		return spec.Backend{}, err
	}
	b.APIKey = cred
	return b, nil
}

// baseURL is the OpenAI base URL of an Envoy Gateway Backend: its first
// endpoint, https when the Backend sets tls or uses port 443, and the
// schema version as the path ("v1" unless set, as the AI Gateway does).
func (r *backendResolver) baseURL(n types.NamespacedName, version string) (string, error) {
	u, ok := r.egBackends[n]
	if !ok {
		return "", refErrorf(reasonBackendNotFound, "Backend %s not found", n)
	}
	var b egBackend
	if err := decodeSpec(u, &b); err != nil {
		return "", refErrorf(reasonUnsupported, "%v", err)
	}
	var host string
	var port int32
	for _, ep := range b.Endpoints {
		if ep.FQDN != nil {
			host, port = ep.FQDN.Hostname, ep.FQDN.Port
		} else if ep.IP != nil {
			host, port = ep.IP.Address, ep.IP.Port
		}
		if host != "" {
			break // the first usable endpoint; Inflow resolves one address
		}
	}
	if host == "" || port <= 0 || port > 65535 {
		return "", refErrorf(reasonUnsupported, "Backend %s has no fqdn or ip endpoint with a port", n)
	}
	if b.TLS != nil && deref(b.TLS.InsecureSkipVerify, false) {
		return "", refErrorf(reasonUnsupported, "Backend %s: tls.insecureSkipVerify is not supported", n)
	}
	scheme := "http"
	if b.TLS != nil || port == 443 {
		scheme = "https"
	}
	if version == "" {
		version = "v1"
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		host = ip.String()
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + "/" + strings.Trim(version, "/"), nil
}

// credential is the API key of the backend's BackendSecurityPolicy, as a
// file Envoy reads (nil without a policy).
func (r *backendResolver) credential(n types.NamespacedName, u *unstructured.Unstructured, s aiServiceBackend) (*spec.APIKey, error) {
	ps := r.policies[n]
	if ref := s.BackendSecurityPolicyRef; ref != nil && len(ps) == 0 { // v1alpha1
		if p, ok := r.policyNames[types.NamespacedName{Namespace: n.Namespace, Name: ref.Name}]; ok {
			ps = append(ps, p)
		} else {
			return nil, refErrorf(reasonBackendNotFound, "BackendSecurityPolicy %s/%s not found", n.Namespace, ref.Name)
		}
	}
	switch len(ps) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, refErrorf(reasonUnsupported, "AIServiceBackend %s is the target of %d BackendSecurityPolicies; attach one", n, len(ps))
	}
	secret, err := APIKeySecret(ps[0])
	if err != nil {
		return nil, refErrorf(reasonUnsupported, "%v", err)
	}
	return &spec.APIKey{SecretFile: CredentialFile(r.credentialsDir, secret), SecretName: CredentialName(secret)}, nil
}

// APIKeySecret is the Secret an APIKey BackendSecurityPolicy names. Other
// policy types (cloud credentials, OIDC) need token exchanges Inflow does
// not do.
func APIKeySecret(u *unstructured.Unstructured) (types.NamespacedName, error) {
	var p backendSecurityPolicy
	if err := decodeSpec(u, &p); err != nil {
		return types.NamespacedName{}, err
	}
	if p.Type != "APIKey" || p.APIKey == nil || p.APIKey.SecretRef == nil || p.APIKey.SecretRef.Name == "" {
		return types.NamespacedName{}, fmt.Errorf("BackendSecurityPolicy %s/%s: type %q is not supported (only APIKey with a secretRef)",
			u.GetNamespace(), u.GetName(), p.Type)
	}
	ref := p.APIKey.SecretRef
	return types.NamespacedName{Namespace: deref(ref.Namespace, u.GetNamespace()), Name: ref.Name}, nil
}
