package check

import (
	_ "github.com/compose-spec/compose-go/v2/loader"
	_ "github.com/envoyproxy/gateway/api/v1alpha1"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "k8s.io/client-go/kubernetes/scheme"
	_ "sigs.k8s.io/kustomize/api/krusty"
	_ "sigs.k8s.io/yaml"
)
