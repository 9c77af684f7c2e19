package envoyfilter

import (
	"fmt"
	"net/http"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/apierror"
)

// inferenceAllow is the one method the inference paths take.
const inferenceAllow = http.MethodPost

const headerAllow = "allow"

// methodNotAllowed answers 405 with the Allow header RFC 9110 requires, in
// the OpenAI error shape.
func (f *filter) methodNotAllowed(allow string) api.StatusType {
	err := fmt.Errorf("%w: this path accepts %s", apierror.ErrMethodNotAllowed, allow)
	return f.failWith(err, map[string][]string{headerAllow: {allow}})
}
