package request

import (
	"errors"
	"strconv"
)

// Sentinel errors; all of them mean the client sent a bad request (400).
var (
	ErrInvalidJSON    = errors.New("request body is not valid JSON")
	ErrNotObject      = errors.New("request body must be a JSON object")
	ErrMissingModel   = errors.New("request body has no \"model\" field")
	ErrModelNotString = errors.New("\"model\" must be a string")
)

// SyntaxError locates invalid JSON. It never quotes the body: bodies hold
// prompts, and errors end up in logs.
type SyntaxError struct {
	Offset int
	Reason string
}

func (e *SyntaxError) Error() string {
	return "invalid JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

func (e *SyntaxError) Unwrap() error { return ErrInvalidJSON }

func syntaxErr(offset int, reason string) error {
	return &SyntaxError{Offset: offset, Reason: reason}
}
