package check

import (
	"fmt"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Scheme knows every kind the manifests use: Kubernetes' own (client-go),
// Gateway API, Envoy Gateway's and CustomResourceDefinitions.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, egv1a1.AddToScheme, gwapiv1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Kustomize builds dir the way `kubectl kustomize dir` does (kubectl runs
// this same krusty package) and returns each resource as YAML.
func Kustomize(dir string) ([][]byte, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		out = append(out, y)
	}
	return out, nil
}

// Decoder decodes strictly: an unknown or duplicated field is an error, as
// the API server's strict field validation makes it.
func Decoder(s *runtime.Scheme) runtime.Decoder {
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}
