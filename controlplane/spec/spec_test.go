package spec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
)

const validYAML = `
listeners:
- {name: public, address: 0.0.0.0, port: 10000}
models:
- {name: m, pool: p}
- {name: g, backend: openai}
pools:
- {name: p, endpoints: ["10.0.0.1:8000"]}
backends:
- {name: openai, base_url: "https://api.openai.com/v1", api_key: {secret_file: /etc/inflow/secrets/openai.yaml}}
`

func TestParseValid(t *testing.T) {
	c, err := spec.Parse([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Filter.EffectiveLibraryPath(); got != spec.DefaultLibraryPath {
		t.Errorf("library path %q", got)
	}
	fc := c.FilterConfig()
	if len(fc.Backends) != 1 || fc.Backends[0].Name != "openai" || len(fc.Pools) != 1 || len(fc.Models) != 2 {
		t.Errorf("filter config %+v", fc)
	}
}

// Whatever the filter's schema holds (pool scheduler settings, objectives)
// reaches the filter config untouched.
func TestFilterSettingsPassThrough(t *testing.T) {
	in := strings.Replace(validYAML, `endpoints: ["10.0.0.1:8000"]}`,
		`endpoints: ["10.0.0.1:8000"], scheduler: {metrics_format: sglang, fallbacks: 3}}`, 1) +
		"objectives: {batch: -1}\n"
	c, err := spec.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	fc := c.FilterConfig()
	s := fc.Pools[0].Scheduler
	if s == nil || s.MetricsFormat != "sglang" || s.Fallbacks == nil || *s.Fallbacks != 3 {
		t.Errorf("scheduler %+v", s)
	}
	if fc.Objectives["batch"] != -1 {
		t.Errorf("objectives %v", fc.Objectives)
	}
	if len(fc.Backends) != 1 || fc.Backends[0].Name != "openai" {
		t.Errorf("backends %+v", fc.Backends)
	}
}

// Each case replaces one line of validYAML (or appends) and expects every
// listed fragment in the error, which must wrap ErrInvalid.
func TestParseRejects(t *testing.T) {
	tests := []struct {
		name    string
		old     string // "" appends new
		new     string
		wantErr []string
	}{
		{"unknown top-level field", "", "extra: 1", []string{`unknown field "extra"`}},
		{"unknown nested field", "- {name: p, endpoints", "- {name: p, weight: 3, endpoints", []string{`unknown field "weight"`}},
		{"duplicate key", "", "models: []", []string{`"models" already set`}},
		{"no listeners", "- {name: public, address: 0.0.0.0, port: 10000}", "", []string{"listeners: at least one listener"}},
		{"bad address", "address: 0.0.0.0", "address: localhost", []string{`listeners[0].address: "localhost" is not an IP`}},
		{"bad port", "port: 10000", "port: 0", []string{"listeners[0].port: must be 1-65535"}},
		{"port out of range", "port: 10000", "port: 70000", []string{"listeners[0].port"}},
		{"bad hostname", "port: 10000}", "port: 10000, hostnames: [\"a*b.com\"]}", []string{"listeners[0].hostnames[0]"}},
		{"tls without key", "port: 10000}", "port: 10000, tls: {cert_file: /c}}", []string{"listeners[0].tls.key_file: must not be empty"}},
		{"relative library path", "", "filter: {library_path: inflow.so}", []string{"filter.library_path: must be an absolute path"}},
		{"undefined pool", "- {name: m, pool: p}", "- {name: m, pool: nope}", []string{`models[0].pool: pool "nope" is not defined`}},
		{"undefined backend", "backend: openai}", "backend: nope}", []string{`models[1].backend: backend "nope"`}},
		{"bad endpoint", `"10.0.0.1:8000"`, `"pod-a:8000"`, []string{`pools[0].endpoints[0]: "pod-a:8000" is not an ip:port`}},
		{"bad scheme", "https://api.openai.com/v1", "ftp://api.openai.com/v1", []string{"backends[0].base_url", "scheme must be http or https"}},
		{"empty base url", `base_url: "https://api.openai.com/v1", `, "", []string{"backends[0].base_url: must not be empty"}},
		{"old api key from env", "{secret_file: /etc/inflow/secrets/openai.yaml}", "{env: OPENAI_API_KEY}", []string{"backends[0].api_key: API keys no longer pass through the control plane", "backends[0].api_key.secret_file: must name"}},
		{"old api key from file", "{secret_file: /etc/inflow/secrets/openai.yaml}", "{file: keys/openai.key}", []string{"api_key.secret_file"}},
		{"relative secret file", "/etc/inflow/secrets/openai.yaml", "secrets/openai.yaml", []string{"backends[0].api_key.secret_file: must be a clean absolute path"}},
		{"secret file at the root", "/etc/inflow/secrets/openai.yaml", "/openai.yaml", []string{"backends[0].api_key.secret_file"}},
		{"bad key header", "openai.yaml}", "openai.yaml, header: \"api key\"}", []string{`backends[0].api_key.header: "api key" is not a header name`}},
		{"relative ca", "openai.yaml}}", "openai.yaml}, ca_file: ca.pem}", []string{"backends[0].ca_file"}},
		{"body limit", "", "limits: {max_request_body_bytes: -1}", []string{"limits.max_request_body_bytes"}},
		{"filter scheduler settings are validated", `endpoints: ["10.0.0.1:8000"]}`, `endpoints: ["10.0.0.1:8000"], scheduler: {metrics_format: tgi}}`, []string{"pools[0].scheduler.metrics_format"}},
		{"route of no model", "", "model_routes: {nope: {timeout: 60s}}", []string{`model_routes["nope"]: no model "nope"`}},
		{"route timeout", "", "model_routes: {m: {timeout: soon}}", []string{`model_routes["m"].timeout: "soon" is not a duration`}},
		{"negative route timeout", "", "model_routes: {m: {timeout: -1s}}", []string{`model_routes["m"].timeout`}},
		{"route hostname", "", "model_routes: {m: {hostnames: [\"a*b.com\"]}}", []string{`model_routes["m"].hostnames[0]`}},
		{"relative access log path", "", "access_log: {path: access.log}", []string{"access_log.path: must be an absolute path"}},
		{"two access log formats", "", "access_log: {json_format: {code: \"%RESPONSE_CODE%\"}, text_format: \"%RESPONSE_CODE%\"}", []string{"access_log: json_format and text_format are exclusive"}},
		{"empty access log format", "", "access_log: {json_format: {}}", []string{"access_log.json_format: must not be empty"}},
		{"malformed operator", "", "access_log: {json_format: {tokens: {total: \"%DYNAMIC_METADATA(io.envoy.ai_gateway:llm_total_token)\"}}}", []string{"access_log.json_format.tokens.total:", "not a valid format"}},
		{"lower-case operator", "", "access_log: {text_format: \"%response_code%\"}", []string{"access_log.text_format:"}},
		{"disabled access log with a path", "", "access_log: {disabled: true, path: /dev/stdout}", []string{"access_log.disabled: a disabled access log takes no path"}},
		{"unknown scheduler field", `endpoints: ["10.0.0.1:8000"]}`, `endpoints: ["10.0.0.1:8000"], scheduler: {speed: 3}}`, []string{`unknown field "speed"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validYAML + tt.new + "\n"
			if tt.old != "" {
				if !strings.Contains(validYAML, tt.old) {
					t.Fatalf("test bug: %q not in validYAML", tt.old)
				}
				in = strings.Replace(validYAML, tt.old, tt.new, 1)
			}
			_, err := spec.Parse([]byte(in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, spec.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := &spec.Config{Listeners: []spec.Listener{{Name: "", Address: "x", Port: 0}}}
	err := c.Validate()
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want FieldErrors, got %v", err)
	}
	for _, w := range []string{"listeners[0].name", "listeners[0].address", "listeners[0].port", "models: at least one model"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}

func TestAPIKeyDefaults(t *testing.T) {
	tests := []struct {
		key                  spec.APIKey
		name, header, prefix string
	}{
		{spec.APIKey{SecretFile: "/s/k.yaml"}, "openai", "authorization", "Bearer "},
		{spec.APIKey{SecretFile: "/s/k.yaml", SecretName: "team-key", Header: "Authorization"}, "team-key", "authorization", "Bearer "},
		{spec.APIKey{SecretFile: "/s/k.yaml", Header: "api-key"}, "openai", "api-key", ""},
	}
	for _, tt := range tests {
		b := spec.Backend{APIKey: &tt.key}
		b.Name = "openai"
		if b.EffectiveSecretName() != tt.name || tt.key.EffectiveHeader() != tt.header || tt.key.Prefix() != tt.prefix {
			t.Errorf("%+v: name %q header %q prefix %q", tt.key, b.EffectiveSecretName(), tt.key.EffectiveHeader(), tt.key.Prefix())
		}
	}
}

func TestParseBaseURL(t *testing.T) {
	tests := []struct {
		in        string
		want      spec.BaseURL
		authority string
	}{
		{"https://api.openai.com/v1", spec.BaseURL{TLS: true, Host: "api.openai.com", Port: 443}, "api.openai.com"},
		{"https://api.openai.com/v1/", spec.BaseURL{TLS: true, Host: "api.openai.com", Port: 443}, "api.openai.com"},
		{"http://10.0.0.5:8080", spec.BaseURL{Host: "10.0.0.5", Port: 8080}, "10.0.0.5:8080"},
		{"https://x.openai.azure.com/openai/v1", spec.BaseURL{TLS: true, Host: "x.openai.azure.com", Port: 443, PathPrefix: "/openai/v1/"}, "x.openai.azure.com"},
		{"https://g.example.com/v1beta/openai", spec.BaseURL{TLS: true, Host: "g.example.com", Port: 443, PathPrefix: "/v1beta/openai/"}, "g.example.com"},
		{"http://[fd00::1]/v1", spec.BaseURL{Host: "fd00::1", Port: 80}, "[fd00::1]"},
		{"https://h:8443/v1", spec.BaseURL{TLS: true, Host: "h", Port: 8443}, "h:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := spec.ParseBaseURL(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v want %+v", got, tt.want)
			}
			if a := got.Authority(); a != tt.authority {
				t.Errorf("authority %q want %q", a, tt.authority)
			}
		})
	}
	for _, bad := range []string{"", "api.openai.com/v1", "https:///v1", "https://u:p@h/v1", "https://h/v1?x=1", "https://h:0/v1"} {
		if _, err := spec.ParseBaseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAccessLogDefaults(t *testing.T) {
	var none *spec.AccessLog
	if !none.On() || none.EffectivePath() != spec.DefaultAccessLogPath || none.EffectiveJSON()["response_code"] != "%RESPONSE_CODE%" {
		t.Errorf("no access_log section: on %v, path %q, json %v", none.On(), none.EffectivePath(), none.EffectiveJSON())
	}
	text := &spec.AccessLog{TextFormat: "%RESPONSE_CODE%"}
	if text.EffectiveText() != "%RESPONSE_CODE%\n" || text.EffectiveJSON() != nil {
		t.Errorf("text format: %q, json %v", text.EffectiveText(), text.EffectiveJSON())
	}
	if (&spec.AccessLog{Disabled: true}).On() {
		t.Error("disabled access log is on")
	}
	c, err := spec.Parse([]byte(validYAML + "access_log: {path: /var/log/a.log, json_format: {m: \"%REQ(X-AI-EG-MODEL)%\", n: 1, nested: {list: [\"%RESPONSE_CODE%\"]}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessLog.EffectivePath() != "/var/log/a.log" || c.AccessLog.EffectiveJSON()["m"] != "%REQ(X-AI-EG-MODEL)%" {
		t.Errorf("access log %+v", c.AccessLog)
	}
}
