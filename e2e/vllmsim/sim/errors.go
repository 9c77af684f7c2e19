package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// errorResponse is vLLM's error body (vllm/entrypoints/openai/engine/protocol.py
// ErrorResponse/ErrorInfo): the OpenAI envelope, with code holding the HTTP status as an
// integer and type the exception class name (BadRequestError, NotFoundError, ...).
type errorResponse struct {
	Error errorInfo `json:"error"`
}

type errorInfo struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

// errorType maps a status to the type name vLLM's create_error_response uses for it.
func errorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequestError"
	case http.StatusNotFound:
		return "NotFoundError"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailableError"
	default:
		return "InternalServerError"
	}
}

func newErrorResponse(status int, msg string) errorResponse {
	return errorResponse{Error: errorInfo{Message: msg, Type: errorType(status), Code: status}}
}

// errorStatus maps an error to the status vLLM answers it with: client mistakes 400,
// a stopping server 503, anything else 500.
func errorStatus(err error) int {
	var br badRequest
	switch {
	case errors.As(err, &br), errors.Is(err, errTooLong):
		return http.StatusBadRequest
	case errors.Is(err, errEngineClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// clientGone reports whether err only says the client stopped waiting: nobody to answer.
func clientGone(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// replyError answers err with its status and a vLLM-shaped body.
func replyError(w http.ResponseWriter, err error) {
	writeError(w, errorStatus(err), err.Error())
}

// writeError sends a vLLM-shaped error with the given status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, newErrorResponse(status, msg))
}

// modelNotFound is vLLM's _check_model reply for a name it does not serve.
func modelNotFound(w http.ResponseWriter, model string) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist.", model))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Every value passed here is a plain struct of strings and numbers.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client left; nothing to tell it
}
