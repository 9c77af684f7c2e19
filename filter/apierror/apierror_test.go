package apierror

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/scheduler"
)

func TestFrom(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{&request.SyntaxError{Offset: 3, Reason: "x"}, 400, "invalid_json"},
		{request.ErrNotObject, 400, "invalid_request_body"},
		{request.ErrMissingModel, 400, "missing_model"},
		{request.ErrModelNotString, 400, "invalid_type"},
		{ErrNoBody, 400, "missing_body"},
		{fmt.Errorf("%w: %q", router.ErrModelNotFound, "m"), 404, "model_not_found"},
		{fmt.Errorf("%w: 9 bytes", ErrBodyTooLarge), 413, "request_too_large"},
		{scheduler.ErrNoEndpoints, 503, "no_healthy_upstream"},
		{scheduler.ErrSaturated, 429, "pool_saturated"},
		{ErrInternal, 500, "internal_error"},
		{fmt.Errorf("anything else"), 500, "internal_error"},
		{&Error{Status: 429, Type: "rate_limit_error", Code: "pool_saturated", Message: "busy"}, 429, "pool_saturated"},
	}
	for _, tt := range tests {
		e := From(tt.err)
		if e.Status != tt.status || e.Code != tt.code {
			t.Errorf("From(%v) = %d %s, want %d %s", tt.err, e.Status, e.Code, tt.status, tt.code)
		}
		var b map[string]map[string]any
		if err := json.Unmarshal(e.Body(), &b); err != nil {
			t.Fatal(err)
		}
		fields := b["error"]
		if len(fields) != 4 || fields["message"] == "" || fields["type"] == "" || fields["code"] != tt.code {
			t.Errorf("body %s", e.Body())
		}
		if _, ok := fields["param"]; !ok {
			t.Errorf("param must be present (null when unset): %s", e.Body())
		}
	}
}
