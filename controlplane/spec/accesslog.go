package spec

import (
	"path"
	"regexp"
	"strings"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// DefaultAccessLogPath is where Envoy writes the access log unless the
// config names a file: the container's stdout, as Envoy Gateway does.
const DefaultAccessLogPath = "/dev/stdout"

// AccessLog is how every listener's Envoy logs each request: one line per
// stream when it ends, in Envoy's format language (command operators such
// as %RESPONSE_CODE% and %DYNAMIC_METADATA(ns:key)%).
type AccessLog struct {
	// Path is the file inside the Envoy container; default /dev/stdout.
	Path string `json:"path,omitempty"`
	// JSONFormat is Envoy's json_format: one JSON object per line whose
	// string values may hold command operators. Default:
	// DefaultAccessLogJSON.
	JSONFormat map[string]any `json:"json_format,omitempty"`
	// TextFormat is Envoy's text format instead; a newline is added when
	// it does not end with one.
	TextFormat string `json:"text_format,omitempty"`
	// Disabled turns the access log off.
	Disabled bool `json:"disabled,omitempty"`
}

// EffectivePath is the log file with its default.
func (a *AccessLog) EffectivePath() string {
	if a == nil || a.Path == "" {
		return DefaultAccessLogPath
	}
	return a.Path
}

// On reports whether Envoy logs requests (the default).
func (a *AccessLog) On() bool { return a == nil || !a.Disabled }

// EffectiveJSON is the JSON format to log with; nil when TextFormat is set.
func (a *AccessLog) EffectiveJSON() map[string]any {
	switch {
	case a == nil:
		return DefaultAccessLogJSON()
	case a.TextFormat != "":
		return nil
	case a.JSONFormat != nil:
		return a.JSONFormat
	}
	return DefaultAccessLogJSON()
}

// EffectiveText is the text format with its final newline, "" for JSON.
func (a *AccessLog) EffectiveText() string {
	if a == nil || a.TextFormat == "" || strings.HasSuffix(a.TextFormat, "\n") {
		if a == nil {
			return ""
		}
		return a.TextFormat
	}
	return a.TextFormat + "\n"
}

// DefaultAccessLogJSON is the format Envoy AI Gateway's access-log guide
// sets on the EnvoyProxy (the same keys, so dashboards and queries built on
// it keep working), plus the token keys and stream latencies Inflow
// writes. It is fixed: it names the conventional cost keys rather than the
// configured ones, because a format that followed the costs would change
// the listener, and Envoy drains a listener's connections when it changes.
// Costs under other keys need a format of one's own.
func DefaultAccessLogJSON() map[string]any {
	md := func(key string) string {
		return "%DYNAMIC_METADATA(" + protocol.MetadataNamespaceAIGateway + ":" + key + ")%"
	}
	return map[string]any{
		"genai_model_name":          "%REQ(" + strings.ToUpper(protocol.HeaderModel) + ")%",
		"genai_model_name_override": md(protocol.MetadataKeyModelNameOverride),
		"genai_backend_name":        md(protocol.MetadataKeyBackendName),
		"genai_response_model":      md(protocol.MetadataKeyResponseModel),
		"genai_tokens_input":        md(protocol.CostKeyInputToken),
		"genai_tokens_output":       md(protocol.CostKeyOutputToken),
		"genai_tokens_total":        md(protocol.CostKeyTotalToken),
		"genai_tokens_cached_input": md(protocol.CostKeyCachedInputToken),
		"genai_tokens_reasoning":    md(protocol.CostKeyReasoningToken),
		"genai_token_latency_ttft":  md(protocol.MetadataKeyTokenLatencyTTFT),
		"genai_token_latency_itl":   md(protocol.MetadataKeyTokenLatencyITL),

		"start_time":                    "%START_TIME%",
		"method":                        "%REQ(:METHOD)%",
		"x-envoy-origin-path":           "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":                      "%PROTOCOL%",
		"response_code":                 "%RESPONSE_CODE%",
		"response_flags":                "%RESPONSE_FLAGS%",
		"response_code_details":         "%RESPONSE_CODE_DETAILS%",
		"bytes_received":                "%BYTES_RECEIVED%",
		"bytes_sent":                    "%BYTES_SENT%",
		"duration":                      "%DURATION%",
		"x-envoy-upstream-service-time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"x-forwarded-for":               "%REQ(X-FORWARDED-FOR)%",
		"user-agent":                    "%REQ(USER-AGENT)%",
		"x-request-id":                  "%REQ(X-REQUEST-ID)%",
		":authority":                    "%REQ(:AUTHORITY)%",
		"upstream_host":                 "%UPSTREAM_HOST%",
		"upstream_cluster":              "%UPSTREAM_CLUSTER%",
		"downstream_local_address":      "%DOWNSTREAM_LOCAL_ADDRESS%",
		"downstream_remote_address":     "%DOWNSTREAM_REMOTE_ADDRESS%",
		"route_name":                    "%ROUTE_NAME%",
	}
}

// operator is one command operator of Envoy's format language:
// %NAME%, %NAME(args)%, %NAME(args):max_length%.
var operator = regexp.MustCompile(`%[A-Z][A-Z0-9_]*(\([^()%]*\))?(:[0-9]+)?%`)

func validateAccessLog(p string, a *AccessLog) []error {
	if a == nil {
		return nil
	}
	var errs []error
	if a.Disabled && (a.Path != "" || a.JSONFormat != nil || a.TextFormat != "") {
		errs = append(errs, config.FieldErrorf(p+".disabled", "a disabled access log takes no path or format"))
	}
	if a.Path != "" && !path.IsAbs(a.Path) {
		errs = append(errs, config.FieldErrorf(p+".path", "must be an absolute path in the Envoy container, got %q", a.Path))
	}
	if a.JSONFormat != nil && a.TextFormat != "" {
		errs = append(errs, config.FieldErrorf(p, "json_format and text_format are exclusive"))
	}
	if a.JSONFormat != nil && len(a.JSONFormat) == 0 {
		errs = append(errs, config.FieldErrorf(p+".json_format", "must not be empty"))
	}
	errs = append(errs, checkOperators(p+".json_format", a.JSONFormat)...)
	if a.TextFormat != "" {
		errs = append(errs, checkFormatString(p+".text_format", a.TextFormat)...)
	}
	return errs
}

// checkOperators checks the format strings of a JSON format, where Envoy
// would refuse the listener (a NACK) over a malformed one.
func checkOperators(p string, v any) []error {
	switch v := v.(type) {
	case map[string]any:
		var errs []error
		for k, x := range v {
			errs = append(errs, checkOperators(p+"."+k, x)...)
		}
		return errs
	case []any:
		var errs []error
		for _, x := range v {
			errs = append(errs, checkOperators(p, x)...)
		}
		return errs
	case string:
		return checkFormatString(p, v)
	}
	return nil
}

func checkFormatString(p, s string) []error {
	if rest := operator.ReplaceAllString(s, ""); strings.Contains(rest, "%") {
		return []error{config.FieldErrorf(p, "%q is not a valid format: every %% starts a command operator such as %%RESPONSE_CODE%% or %%REQ(X-AI-EG-MODEL)%%", s)}
	}
	return nil
}
