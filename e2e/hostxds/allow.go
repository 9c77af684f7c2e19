package hostxds

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrNotModelled marks a resource using something envoyhost does not do.
// Envoy would act on such a field; the host refusing it (a NACK naming the
// field) keeps a test from passing against behaviour production lacks.
var ErrNotModelled = errors.New("not modelled by envoyhost")

// allowed lists, per message, the fields envoyhost implements. A set field
// not listed is refused. Messages listed with no fields accept none.
var allowed = map[protoreflect.FullName][]string{
	// max_connections_to_accept_per_socket_event and bypass_overload_manager
	// tune accepting and the overload manager, which the host does not
	// have (as an Envoy without overload actions); access_log is checked
	// in translateListener
	"envoy.config.listener.v3.Listener": {"name", "address", "filter_chains", "default_filter_chain", "per_connection_buffer_limit_bytes",
		"max_connections_to_accept_per_socket_event", "bypass_overload_manager", "access_log"},
	"envoy.config.core.v3.Address":               {"socket_address"},
	"envoy.config.core.v3.SocketAddress":         {"protocol", "address", "port_value", "ipv4_compat"},
	"envoy.config.listener.v3.FilterChain":       {"name", "filters"},
	"envoy.config.core.v3.ApiConfigSource":       {"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"},
	"envoy.config.core.v3.GrpcService":           {"envoy_grpc"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc": {"cluster_name"},
	// metadata is read by filters and loggers the host does not run
	// (Envoy Gateway's names the resources a route or cluster came from)
	"envoy.config.core.v3.Metadata":                 {"filter_metadata"},
	"envoy.config.listener.v3.Filter":               {"name", "typed_config"},
	"envoy.config.core.v3.ConfigSource":             {"ads", "api_config_source", "resource_api_version", "initial_fetch_timeout", "path_config_source"},
	"envoy.config.core.v3.AggregatedConfigSource":   {},
	"envoy.config.core.v3.ExtensionConfigSource":    {"config_source", "type_urls"},
	"envoy.config.core.v3.TypedExtensionConfig":     {"name", "typed_config"},
	"envoy.config.core.v3.DataSource":               {"inline_string", "inline_bytes", "filename"},
	"envoy.config.core.v3.HeaderValueOption":        {"header", "append_action", "append", "keep_empty_value"},
	"envoy.config.core.v3.HeaderValue":              {"key", "value"},
	"envoy.config.core.v3.SubstitutionFormatString": {"text_format", "text_format_source", "json_format", "omit_empty_values", "content_type"},
	"envoy.config.core.v3.HttpProtocolOptions":      {"max_headers_count", "headers_with_underscores_action"},
	"envoy.config.core.v3.Http1ProtocolOptions":     {"enable_trailers", "accept_http_10", "default_host_for_http_10"},
	"envoy.config.core.v3.RuntimeUInt32":            {"default_value"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"stat_prefix", "codec_type", "rds", "route_config", "http_filters", "stream_idle_timeout", "request_timeout",
		"request_headers_timeout", "use_remote_address", "normalize_path", "merge_slashes", "strip_any_host_port",
		"local_reply_config", "access_log", "max_request_headers_kb", "common_http_protocol_options",
		"http_protocol_options", "proxy_100_continue", "generate_request_id", "path_with_escaped_slashes_action",
		"server_header_transformation", "http2_protocol_options",
	},
	"envoy.config.core.v3.Http2ProtocolOptions":                                    {"initial_connection_window_size", "initial_stream_window_size", "max_concurrent_streams"},
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds":              {"route_config_name", "config_source"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter":       {"name", "typed_config", "config_discovery"},
	"envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig": {"mappers", "body_format"},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper":   {"filter", "status_code", "body", "body_format_override", "headers_to_add"},
	"envoy.extensions.filters.http.health_check.v3.HealthCheck":                    {"pass_through_mode", "headers"},
	"envoy.extensions.filters.http.router.v3.Router":                               {"suppress_envoy_headers"},
	"envoy.extensions.filters.http.golang.v3alpha.Config":                          {"library_id", "library_path", "plugin_name", "plugin_config"},
	"envoy.extensions.filters.http.golang.v3alpha.ConfigsPerRoute":                 {"plugins_config"},
	"envoy.extensions.filters.http.golang.v3alpha.RouterPlugin":                    {"config"},
	"envoy.config.accesslog.v3.AccessLog":                                          {"name", "filter", "typed_config"},
	"envoy.extensions.access_loggers.file.v3.FileAccessLog":                        {"path", "log_format", "format", "json_format"},
	"envoy.config.accesslog.v3.AccessLogFilter":                                    {"status_code_filter", "duration_filter", "and_filter", "or_filter", "header_filter", "response_flag_filter", "metadata_filter", "not_health_check_filter"},
	"envoy.config.accesslog.v3.StatusCodeFilter":                                   {"comparison"},
	"envoy.config.accesslog.v3.DurationFilter":                                     {"comparison"},
	"envoy.config.accesslog.v3.ComparisonFilter":                                   {"op", "value"},
	"envoy.config.accesslog.v3.AndFilter":                                          {"filters"},
	"envoy.config.accesslog.v3.OrFilter":                                           {"filters"},
	"envoy.config.accesslog.v3.HeaderFilter":                                       {"header"},
	"envoy.config.accesslog.v3.ResponseFlagFilter":                                 {"flags"},
	"envoy.config.accesslog.v3.MetadataFilter":                                     {"matcher", "match_if_key_not_found"},
	"envoy.config.accesslog.v3.NotHealthCheckFilter":                               {},
	"envoy.type.matcher.v3.MetadataMatcher":                                        {"filter", "path", "value"},
	"envoy.type.matcher.v3.MetadataMatcher.PathSegment":                            {"key"},
	"envoy.type.matcher.v3.ValueMatcher":                                           {"string_match", "bool_match", "present_match", "null_match", "double_match"},
	"envoy.type.matcher.v3.ValueMatcher.NullMatch":                                 {},
	"envoy.type.matcher.v3.DoubleMatcher":                                          {"exact"},
	"envoy.type.matcher.v3.StringMatcher":                                          {"exact", "prefix", "suffix", "contains", "ignore_case"},
	"envoy.config.route.v3.RouteConfiguration":                                     {"name", "virtual_hosts", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "ignore_port_in_host_matching"},
	"envoy.config.route.v3.VirtualHost":                                            {"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "retry_policy", "per_request_buffer_limit_bytes", "request_body_buffer_limit", "typed_per_filter_config", "metadata"},
	"envoy.config.route.v3.Route":                                                  {"name", "metadata", "match", "route", "direct_response", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "per_request_buffer_limit_bytes", "request_body_buffer_limit", "typed_per_filter_config"},
	"envoy.config.route.v3.RouteMatch":                                             {"prefix", "path", "path_separated_prefix", "case_sensitive", "headers"},
	"envoy.config.route.v3.HeaderMatcher":                                          {"name", "exact_match", "prefix_match", "suffix_match", "contains_match", "present_match", "string_match", "range_match", "invert_match", "treat_missing_header_as_empty"},
	"envoy.type.v3.Int64Range":                                                     {"start", "end"},
	// upgrade_configs: the host's codec treats Upgrade as a hop-by-hop
	// header and proxies no upgrades (see e2e/envoyhost/README.md)
	"envoy.config.route.v3.RouteAction":               {"cluster", "prefix_rewrite", "host_rewrite_literal", "timeout", "idle_timeout", "retry_policy", "upgrade_configs"},
	"envoy.config.route.v3.RouteAction.UpgradeConfig": {"upgrade_type", "enabled"},
	"envoy.config.route.v3.RetryPolicy":               {"retry_on", "num_retries", "retriable_status_codes", "retry_back_off"},
	"envoy.config.route.v3.RetryPolicy.RetryBackOff":  {"base_interval", "max_interval"},
	"envoy.config.route.v3.DirectResponseAction":      {"status", "body"},
	"envoy.config.cluster.v3.Cluster": {"name", "type", "lb_policy", "original_dst_lb_config", "connect_timeout", "cleanup_interval", "circuit_breakers", "per_connection_buffer_limit_bytes", "load_assignment", "eds_cluster_config", "load_balancing_policy", "typed_extension_protocol_options", "dns_lookup_family", "dns_refresh_rate", "transport_socket",
		// the host has no health checking, so removal never waits for it
		// (upstream_impl.cc updateDynamicHostList); no CommonLbConfig field is modelled
		"metadata", "common_lb_config", "ignore_health_on_host_removal"},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig":      {},
	"envoy.config.cluster.v3.Cluster.OriginalDstLbConfig": {"use_http_header", "http_header_name", "metadata_key"},
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig":    {"eds_config", "service_name"},
	"envoy.type.metadata.v3.MetadataKey":                  {"key", "path"},
	"envoy.type.metadata.v3.MetadataKey.PathSegment":      {"key"},
	"envoy.config.cluster.v3.CircuitBreakers":             {"thresholds"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds":  {"priority", "max_connections", "max_pending_requests", "max_requests", "max_retries"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment":      {"cluster_name", "endpoints"},
	// weights and localities are checked in endpoints (cluster.go); the
	// metadata (Envoy Gateway names the backend) is read by subset load
	// balancing and loggers the host does not run
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                                                 {"lb_endpoints", "locality", "load_balancing_weight", "metadata"},
	"envoy.config.core.v3.Locality":                                                                {"region", "zone", "sub_zone"},
	"envoy.config.endpoint.v3.LbEndpoint":                                                          {"endpoint", "health_status", "load_balancing_weight", "metadata"},
	"envoy.config.endpoint.v3.Endpoint":                                                            {"address"},
	"envoy.config.cluster.v3.LoadBalancingPolicy":                                                  {"policies"},
	"envoy.config.cluster.v3.LoadBalancingPolicy.Policy":                                           {"typed_extension_config"},
	"envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost":                       {"override_host_sources", "fallback_policy"},
	"envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost.OverrideHostSource":    {"header", "metadata"},
	"envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest":                       {"locality_lb_config"},
	"envoy.extensions.load_balancing_policies.common.v3.LocalityLbConfig":                          {"locality_weighted_lb_config"},
	"envoy.extensions.load_balancing_policies.common.v3.LocalityLbConfig.LocalityWeightedLbConfig": {},
	"envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin":                           {},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                                       {"explicit_http_config", "http_filters"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig":                    {"http_protocol_options"},
	"envoy.extensions.filters.http.credential_injector.v3.CredentialInjector":                      {"overwrite", "allow_request_without_credential", "credential"},
	"envoy.extensions.http.injected_credentials.generic.v3.Generic":                                {"credential", "header", "header_value_prefix"},
	"envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig":                                    {"name", "sds_config"},
	"envoy.config.core.v3.PathConfigSource":                                                        {"path", "watched_directory"},
	"envoy.config.core.v3.WatchedDirectory":                                                        {"path"},
	"envoy.config.core.v3.TransportSocket":                                                         {"name", "typed_config"},
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext":                                 {"sni", "common_tls_context"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext":                                   {"validation_context"},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext":                       {"trusted_ca", "match_typed_subject_alt_names"},
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher":                              {"san_type", "matcher"},
	"envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec":                                {},
}

// leaf messages are taken whole (their fields are values, not behaviour).
var leaf = map[protoreflect.FullName]bool{
	"google.protobuf.Duration": true, "google.protobuf.UInt32Value": true, "google.protobuf.UInt64Value": true,
	"google.protobuf.BoolValue": true, "google.protobuf.Struct": true, "google.protobuf.Value": true,
	"google.protobuf.StringValue": true, "google.protobuf.Int32Value": true,
}

// opaque Any fields are handed on as bytes without looking inside: the
// golang filter's plugin_config belongs to the plugin.
var opaque = map[string]bool{
	"envoy.extensions.filters.http.golang.v3alpha.Config.plugin_config": true,
	"envoy.extensions.filters.http.golang.v3alpha.RouterPlugin.config":  true,
}

// checkModelled walks every set field of m (path names the resource for
// the error) and refuses the first one envoyhost does not implement.
func checkModelled(m proto.Message, path string) error {
	return walk(m.ProtoReflect(), path)
}

func walk(m protoreflect.Message, path string) error {
	name := m.Descriptor().FullName()
	if leaf[name] {
		return nil
	}
	if name == "google.protobuf.Any" {
		return walkAny(m.Interface().(*anypb.Any), path)
	}
	fields, ok := allowed[name]
	if !ok {
		return fmt.Errorf("%w: %s (%s)", ErrNotModelled, path, name)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fpath := path + "." + string(fd.Name())
		if !contains(fields, string(fd.Name())) {
			err = fmt.Errorf("%w: %s", ErrNotModelled, fpath)
			return false
		}
		if opaque[string(name)+"."+string(fd.Name())] {
			return true
		}
		err = walkValue(fd, v, fpath)
		return err == nil
	})
	return err
}

func walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch {
	case fd.IsList():
		if fd.Kind() != protoreflect.MessageKind {
			return nil
		}
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if err := walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case fd.IsMap():
		if fd.MapValue().Kind() != protoreflect.MessageKind {
			return nil
		}
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			err = walk(mv.Message(), fmt.Sprintf("%s[%s]", path, k.String()))
			return err == nil
		})
		return err
	case fd.Kind() == protoreflect.MessageKind:
		return walk(v.Message(), path)
	}
	return nil
}

func walkAny(a *anypb.Any, path string) error {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return fmt.Errorf("%w: %s has type %s", ErrNotModelled, path, a.GetTypeUrl())
	}
	inner := mt.New().Interface()
	if err := proto.Unmarshal(a.GetValue(), inner); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return walk(inner.ProtoReflect(), path+"("+string(mt.Descriptor().Name())+")")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
