// Package apierror turns filter errors into HTTP statuses and OpenAI-shaped
// error bodies: {"error":{"message","type","param","code"}}.
package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/scheduler"
)

// Sentinel errors raised by the Envoy adapter itself.
var (
	ErrBodyTooLarge = errors.New("request body too large")
	ErrNoBody       = errors.New("request has no body")
	ErrInternal     = errors.New("internal error")
	// ErrMethodNotAllowed: the path exists but not with this method.
	ErrMethodNotAllowed = errors.New("method not allowed")
)

// Error is an HTTP error response in OpenAI's shape.
type Error struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

type body struct {
	Error payload `json:"error"`
}

type payload struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// Body renders the JSON response body.
func (e *Error) Body() []byte {
	p := payload{Message: e.Message, Type: e.Type, Code: e.Code}
	if e.Param != "" {
		p.Param = &e.Param
	}
	out, err := json.Marshal(body{Error: p})
	if err != nil {
		// Marshalling strings cannot fail; keep a valid body regardless.
		return []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}`)
	}
	return out
}

// From maps err, wrapped or not, to the response a client should get.
// Messages are fixed per class, or come from errors that never quote the
// request body.
func From(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, request.ErrMissingModel):
		return invalid(http.StatusBadRequest, "missing_model", "model", "you must provide a model parameter")
	case errors.Is(err, request.ErrModelNotString):
		return invalid(http.StatusBadRequest, "invalid_type", "model", "model must be a string")
	case errors.Is(err, request.ErrNotObject):
		return invalid(http.StatusBadRequest, "invalid_request_body", "", "the request body must be a JSON object")
	case errors.Is(err, request.ErrInvalidJSON):
		return invalid(http.StatusBadRequest, "invalid_json", "", "we could not parse the JSON body of your request: "+err.Error())
	case errors.Is(err, ErrNoBody):
		return invalid(http.StatusBadRequest, "missing_body", "", "this endpoint requires a JSON request body")
	case errors.Is(err, ErrMethodNotAllowed):
		return invalid(http.StatusMethodNotAllowed, "method_not_allowed", "", err.Error())
	case errors.Is(err, router.ErrModelNotFound):
		return invalid(http.StatusNotFound, "model_not_found", "model", "the model does not exist: "+err.Error())
	case errors.Is(err, router.ErrPoolNotFound):
		return &Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "pool_not_configured",
			Message: "this route's InferencePool is not known to the gateway's filter yet; retry shortly"}
	case errors.Is(err, ErrBodyTooLarge):
		return invalid(http.StatusRequestEntityTooLarge, "request_too_large", "", err.Error())
	case errors.Is(err, scheduler.ErrSaturated):
		return &Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "pool_saturated",
			Message: "the model servers are saturated and this request is sheddable; retry later"}
	case errors.Is(err, scheduler.ErrNoEndpoints):
		return &Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "no_healthy_upstream",
			Message: "no model server endpoint is available for this model"}
	}
	return &Error{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error",
		Message: "the gateway failed to process the request"}
}

func invalid(status int, code, param, msg string) *Error {
	return &Error{Status: status, Type: "invalid_request_error", Code: code, Param: param, Message: msg}
}
