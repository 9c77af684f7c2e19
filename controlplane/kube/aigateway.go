package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The Envoy AI Gateway and Envoy Gateway kinds Inflow reads. Their Go
// modules are not available to us, so objects arrive unstructured and are
// decoded into the few fields below: the wire format as the AI Gateway's
// v1beta1 API documents it (v1alpha1 has the same shape for these fields).
const (
	aiGatewayGroup    = "aigateway.envoyproxy.io"
	envoyGatewayGroup = "gateway.envoyproxy.io"
	inferenceGroup    = "inference.networking.k8s.io"
	gatewayAPIGroup   = "gateway.networking.k8s.io"

	kindInferencePool    = "InferencePool"
	kindAIServiceBackend = "AIServiceBackend"
	kindGateway          = "Gateway"
	kindBackend          = "Backend"

	// modelHeader is the header AIGatewayRoute rules match model names on.
	modelHeaderMatch = "x-ai-eg-model"
	// apiKeySecretKey is where a BackendSecurityPolicy's Secret holds the
	// key (the AI Gateway's documented key name).
	apiKeySecretKey = "apiKey"
)

// AI Gateway resources, newest version first: the source watches the first
// version the API server serves.
var (
	aiGatewayVersions = []string{"v1beta1", "v1alpha1"}
	resourceRoutes    = "aigatewayroutes"
	resourceBackends  = "aiservicebackends"
	resourcePolicies  = "backendsecuritypolicies"
	// egBackends is Envoy Gateway's Backend, which an AIServiceBackend
	// points at for the address of the service.
	egBackends = schema.GroupVersionResource{Group: envoyGatewayGroup, Version: "v1alpha1", Resource: "backends"}
)

type aiGatewayRoute struct {
	ParentRefs []parentRef      `json:"parentRefs"`
	Hostnames  []string         `json:"hostnames"`
	Rules      []routeRule      `json:"rules"`
	Costs      []llmRequestCost `json:"llmRequestCosts"`
}

// llmRequestCost is one token cost the route's responses write as
// io.envoy.ai_gateway dynamic metadata; the filter's cost.Spec has the
// same types.
type llmRequestCost struct {
	MetadataKey string  `json:"metadataKey"`
	Type        string  `json:"type"`
	CEL         *string `json:"cel"`
}

type parentRef struct {
	Group     *string `json:"group"`
	Kind      *string `json:"kind"`
	Namespace *string `json:"namespace"`
	Name      string  `json:"name"`
}

type routeRule struct {
	Name        string         `json:"name"`
	Matches     []routeMatch   `json:"matches"`
	BackendRefs []backendRef   `json:"backendRefs"`
	Timeouts    *routeTimeouts `json:"timeouts"`
	OwnedBy     *string        `json:"modelsOwnedBy"`
}

// routeTimeouts is Gateway API's HTTPRouteTimeouts: durations such as
// "60s" or "1m30s".
type routeTimeouts struct {
	Request        *string `json:"request"`
	BackendRequest *string `json:"backendRequest"`
}

type routeMatch struct {
	Headers []headerMatch `json:"headers"`
}

type headerMatch struct {
	Type  *string `json:"type"`
	Name  string  `json:"name"`
	Value string  `json:"value"`
}

type backendRef struct {
	Name              string  `json:"name"`
	Namespace         *string `json:"namespace"`
	Group             *string `json:"group"`
	Kind              *string `json:"kind"`
	ModelNameOverride string  `json:"modelNameOverride"`
	Weight            *int32  `json:"weight"`
	Priority          *uint32 `json:"priority"`
}

type aiServiceBackend struct {
	Schema struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"schema"`
	BackendRef struct {
		Group     *string `json:"group"`
		Kind      *string `json:"kind"`
		Name      string  `json:"name"`
		Namespace *string `json:"namespace"`
	} `json:"backendRef"`
	// BackendSecurityPolicyRef is v1alpha1's way of attaching a policy.
	BackendSecurityPolicyRef *struct {
		Name string `json:"name"`
	} `json:"backendSecurityPolicyRef"`
}

type backendSecurityPolicy struct {
	TargetRefs []struct {
		Group string `json:"group"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
	} `json:"targetRefs"`
	Type   string `json:"type"`
	APIKey *struct {
		SecretRef *struct {
			Name      string  `json:"name"`
			Namespace *string `json:"namespace"`
		} `json:"secretRef"`
	} `json:"apiKey"`
}

type egBackend struct {
	Endpoints []struct {
		FQDN *struct {
			Hostname string `json:"hostname"`
			Port     int32  `json:"port"`
		} `json:"fqdn"`
		IP *struct {
			Address string `json:"address"`
			Port    int32  `json:"port"`
		} `json:"ip"`
	} `json:"endpoints"`
	TLS *struct {
		InsecureSkipVerify *bool `json:"insecureSkipVerify"`
	} `json:"tls"`
}

// decodeSpec reads u's spec into out, lenient about fields Inflow does not
// read (users' objects carry many) but not about the types of those it does.
func decodeSpec(u *unstructured.Unstructured, out any) error {
	raw, ok := u.Object["spec"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s/%s has no spec", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, out); err != nil {
		return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
