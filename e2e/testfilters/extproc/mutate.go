package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// headerWriter is what a mutation needs of a header map (api.HeaderMap
// has it; mapHeaders gives it to a local reply's headers).
type headerWriter interface {
	Get(key string) (string, bool)
	Set(key, value string)
	Add(key, value string)
	Del(key string)
}

// applyHeaderMutation applies m as Envoy's MutationUtils::applyHeaderMutations
// does under the default HeaderMutationRules (no mutation_rules): removing
// pseudo headers or host, and touching host, :authority, :method, :scheme
// or x-envoy-* headers, are ignored and counted (rejected); an invalid
// name or value fails the whole mutation. dropContentLength skips
// content-length (ProcessorState::shouldRemoveContentLength).
func applyHeaderMutation(m *extprocv3.HeaderMutation, h headerWriter, dropContentLength bool) (rejected []string, err error) {
	for _, name := range m.GetRemoveHeaders() {
		if !validName(name) {
			return rejected, errors.New("remove_headers contain invalid character, may not be removed")
		}
		name = strings.ToLower(name)
		if !modifiable(name) || !allowed(name) {
			rejected = append(rejected, name)
			continue
		}
		h.Del(name)
	}
	for _, o := range m.GetSetHeaders() {
		hv := o.GetHeader()
		if hv == nil {
			continue
		}
		name := strings.ToLower(hv.GetKey())
		if dropContentLength && name == "content-length" {
			continue
		}
		value := string(hv.GetRawValue())
		if !validName(name) || !validValue(value) {
			return rejected, errors.New("set_headers contain invalid character, may not be appended")
		}
		appendValue := o.GetAppend().GetValue()
		_, exists := h.Get(name)
		if !allowed(name) || (strings.HasPrefix(name, ":") && appendValue && exists) || !validSpecial(name, value) {
			rejected = append(rejected, name)
			continue
		}
		if appendValue {
			h.Add(name, value)
		} else {
			h.Set(name, value)
		}
	}
	return rejected, nil
}

// modifiable: HeaderUtility::isModifiableHeader (removal).
func modifiable(name string) bool { return !strings.HasPrefix(name, ":") && name != "host" }

// allowed: Checker::isAllowed with default rules.
func allowed(name string) bool {
	switch name {
	case "host", ":authority", ":method", ":scheme":
		return false
	}
	return !strings.HasPrefix(name, "x-envoy")
}

// validSpecial: Checker::isValidValue for :status.
func validSpecial(name, value string) bool {
	if name != ":status" {
		return true
	}
	n, err := strconv.Atoi(value)
	return err == nil && n >= 200
}

// validName: HeaderUtility::headerNameIsValid (RFC 9110 token, or a
// pseudo header).
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if i == 0 && c == ':' {
			continue
		}
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validValue: HeaderUtility::headerValueIsValid (no NUL, CR or LF).
func validValue(v string) bool { return !strings.ContainsAny(v, "\x00\r\n") }

// applyBodyMutation replaces or clears a buffered body. A new body whose
// length differs from the content-length header fails, as
// ProcessorState::validateContentLength does.
func applyBodyMutation(m *extprocv3.BodyMutation, buf api.BufferInstance, h headerWriter) error {
	switch mut := m.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		if h != nil {
			if cl, ok := h.Get("content-length"); ok {
				if n, err := strconv.Atoi(cl); err == nil && n != len(mut.Body) {
					return errors.New("mismatch between content length and the length of the mutated body")
				}
			}
		}
		return buf.Set(mut.Body)
	case *extprocv3.BodyMutation_ClearBody:
		if mut.ClearBody {
			buf.Reset()
		}
	case nil:
	default:
		return fmt.Errorf("%w: unexpected body mutation", errSpurious)
	}
	return nil
}

// mapHeaders is a local reply's header map.
type mapHeaders map[string][]string

func (m mapHeaders) Get(k string) (string, bool) {
	v, ok := m[k]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}
func (m mapHeaders) Set(k, v string) { m[k] = []string{v} }
func (m mapHeaders) Add(k, v string) { m[k] = append(m[k], v) }
func (m mapHeaders) Del(k string)    { delete(m, k) }
