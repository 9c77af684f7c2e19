package sim

import (
	"math"
	"strconv"
	"strings"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// The ORCA load report vLLM attaches to a response when the request asks
// for one (vllm/entrypoints/openai/orca_metrics.py, v0.11+): request header
// endpoint-load-metrics-format: TEXT or JSON (case-insensitive), response
// header endpoint-load-metrics. vLLM adds it only to non-streaming chat
// and completions responses (JSONResponse(..., headers=metrics_header(...));
// a StreamingResponse gets none), and so does the simulator.
const (
	// HeaderLoadMetricsFormat asks for a load report.
	HeaderLoadMetricsFormat = protocol.HeaderLoadMetricsFormat
	// HeaderLoadMetrics carries it.
	HeaderLoadMetrics = protocol.HeaderLoadMetrics
)

// loadReport renders the report in vLLM's exact text: named metrics in
// the order vLLM's Prometheus registry collects them (num_requests_waiting
// is registered before kv_cache_usage_perc), values as Python's repr of a
// float, TEXT as "TEXT named_metrics.<name>=<value>, ..." and JSON as
// "JSON " + json.dumps({"named_metrics": {...}}) with Python's separators.
// ok is false for any other format, as vLLM sends no header then.
func loadReport(format string, waiting, kvUsage float64) (string, bool) {
	names := [2]string{"num_requests_waiting", "kv_cache_usage_perc"}
	values := [2]float64{waiting, kvUsage}
	var b strings.Builder
	switch strings.ToLower(format) {
	case "text":
		b.WriteString("TEXT ")
		for i := range names {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("named_metrics." + names[i] + "=" + pyFloat(values[i]))
		}
	case "json":
		b.WriteString(`JSON {"named_metrics": {`)
		for i := range names {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(`"` + names[i] + `": ` + pyFloat(values[i]))
		}
		b.WriteString("}}")
	default:
		return "", false
	}
	return b.String(), true
}

// pyFloat formats v as Python's repr(float) does: the shortest digits that
// round-trip, in fixed notation with at least one decimal when the decimal
// exponent is in [-4, 16), else scientific with a sign and at least two
// exponent digits (1e-05, 1.5e+16); nan, inf and -inf as Python prints them.
func pyFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(v, 'e', -1, 64) // d[.ddd]e±XX
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		es := strconv.Itoa(exp)
		if len(es) < 2 {
			es = "0" + es
		}
		return mant + "e" + sign + es
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}
