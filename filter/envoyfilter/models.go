package envoyfilter

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/inflow-gateway/inflow/filter/request"
)

// pathModelPrefix starts OpenAI's retrieve-model path, /v1/models/{id}.
const pathModelPrefix = pathModels + "/"

// modelsAllow is what the models paths answer; the rest get 405.
const modelsAllow = "GET, HEAD"

// serveModels answers the models API the way OpenAI does: the list at
// /v1/models, one model object at /v1/models/{id} (404 model_not_found for
// a model the gateway does not serve), 405 for other methods. handled is
// false for every other path.
func (f *filter) serveModels(method, path string) (status api.StatusType, handled bool) {
	p := request.PathOnly(path)
	if p != pathModels && !strings.HasPrefix(p, pathModelPrefix) {
		return 0, false
	}
	if method != http.MethodGet && method != http.MethodHead {
		return f.methodNotAllowed(modelsAllow), true
	}
	id := strings.TrimPrefix(p, pathModelPrefix)
	if p == pathModels || id == "" {
		return f.reply(http.StatusOK, f.cfg.router.ModelList()), true
	}
	// SDKs escape the id ("org/model" arrives as org%2Fmodel); some send
	// the slash as is. Both name the same model.
	if unescaped, err := url.PathUnescape(id); err == nil {
		id = unescaped
	}
	m, err := f.cfg.router.Lookup([]byte(id))
	if err != nil {
		return f.fail(err), true
	}
	return f.reply(http.StatusOK, m.Object()), true
}
