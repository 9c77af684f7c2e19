package pool

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// LoadReport is what a vLLM endpoint-load-metrics response header says.
type LoadReport struct {
	Waiting, KVCacheUsage       float64
	HasWaiting, HasKVCacheUsage bool
}

// ORCA named metrics vLLM reports (orca_metrics.py maps
// vllm:num_requests_waiting and vllm:kv_cache_usage_perc to these).
const (
	orcaWaiting = "num_requests_waiting"
	orcaKVCache = "kv_cache_usage_perc"
)

// ParseLoadReport reads an endpoint-load-metrics header in the ORCA TEXT
// ("TEXT named_metrics.kv_cache_usage_perc=0.3, ...") or JSON ("JSON
// {\"named_metrics\": {...}}") format, the two vLLM writes; ok is false for
// anything else, or when no usable value is in it. Values that are not
// finite, a negative queue and a KV usage outside [0,1] are ignored.
func ParseLoadReport(v string) (r LoadReport, ok bool) {
	format, body, _ := strings.Cut(strings.TrimSpace(v), " ")
	named := map[string]float64{}
	switch strings.ToUpper(format) {
	case "TEXT":
		for _, kv := range strings.Split(body, ",") {
			k, val, found := strings.Cut(strings.TrimSpace(kv), "=")
			name, isNamed := strings.CutPrefix(k, "named_metrics.")
			if !found || !isNamed {
				continue
			}
			if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				named[name] = f
			}
		}
	case "JSON":
		var doc struct {
			NamedMetrics map[string]float64 `json:"named_metrics"`
		}
		if json.Unmarshal([]byte(body), &doc) != nil {
			return r, false
		}
		named = doc.NamedMetrics
	default:
		return r, false
	}
	if w, found := named[orcaWaiting]; found && w >= 0 && !math.IsInf(w, 0) {
		r.Waiting, r.HasWaiting = w, true
	}
	if kv, found := named[orcaKVCache]; found && kv >= 0 && kv <= 1 {
		r.KVCacheUsage, r.HasKVCacheUsage = kv, true
	}
	return r, r.HasWaiting || r.HasKVCacheUsage
}
