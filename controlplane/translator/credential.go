package translator

import (
	"path"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	credentialinjectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// credentialOptions puts the backend's API key on every request to its
// cluster without the key passing through xDS (CONTRACTS.md item 3): an
// upstream HTTP filter, Envoy's credential injector, reads it from an SDS
// secret file inside the Envoy container. The injector's factory is
// registered as an upstream filter too
// (source/extensions/filters/http/credential_injector/config.cc:67-70);
// upstream filter chains must end with the upstream codec.
//
// The file is a DiscoveryResponse holding one Secret{name, generic_secret}.
// Envoy needs it to exist when the cluster arrives
// (subscription_factory_impl.cc:58-61) and re-reads it when an entry of
// its directory is moved to (watched_directory): that is how both an
// atomic `mv` and a Kubernetes Secret update (a "..data" symlink swap)
// rotate the key without a restart. Each request (each retry too) gets the
// key current at the time.
func credentialOptions(b spec.Backend) (*anypb.Any, error) {
	k := b.APIKey
	generic, err := typed("generic credential", &genericv3.Generic{
		Credential: &tlsv3.SdsSecretConfig{
			Name: b.EffectiveSecretName(),
			SdsConfig: &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
					Path:             k.SecretFile,
					WatchedDirectory: &corev3.WatchedDirectory{Path: path.Dir(k.SecretFile)},
				}},
			},
		},
		Header:            k.EffectiveHeader(),
		HeaderValuePrefix: k.Prefix(),
	})
	if err != nil {
		return nil, err
	}
	injector, err := typed("credential injector", &credentialinjectorv3.CredentialInjector{
		// Replace what the client sent: its key is for the gateway (or
		// none), never for the backend.
		Overwrite: true,
		// Without a key the request fails (401) instead of reaching the
		// backend unauthenticated.
		AllowRequestWithoutCredential: false,
		Credential:                    &corev3.TypedExtensionConfig{Name: genericCredentialName, TypedConfig: generic},
	})
	if err != nil {
		return nil, err
	}
	codec, err := typed("upstream codec", &upstreamcodecv3.UpstreamCodec{})
	if err != nil {
		return nil, err
	}
	return typed("http protocol options", &upstreamhttpv3.HttpProtocolOptions{
		// HTTP/1.1, as without these options.
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: credentialInjectorName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: injector}},
			{Name: upstreamCodecName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: codec}},
		},
	})
}
