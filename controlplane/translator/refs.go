package translator

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrReference marks a listener naming an ECDS resource the set does not
// hold, or an ECDS resource no listener names. go-control-plane's
// Snapshot.Consistent checks RDS and EDS names only, so a missing filter
// config would otherwise leave Envoy's listeners warming for ever.
var ErrReference = errors.New("inconsistent ECDS references")

// CheckExtensionReferences reports whether the listeners' config_discovery
// names and the ECDS resources match exactly. For Envoy Gateway's proxies,
// whose listeners Envoy Gateway serves, an ECDS resource no listener here
// names is theirs.
func (r *Resources) CheckExtensionReferences() error {
	have := make(map[string]bool, len(r.Extensions))
	for _, e := range r.Extensions {
		have[e.GetName()] = true
	}
	used := map[string]bool{}
	var errs []error
	for _, l := range r.Listeners {
		names, err := ExtensionNames(l)
		if err != nil {
			return err
		}
		for _, n := range names {
			used[n] = true
			if !have[n] {
				errs = append(errs, fmt.Errorf("%w: listener %q subscribes to %q, which is not served", ErrReference, l.GetName(), n))
			}
		}
	}
	for _, e := range r.Extensions {
		if !r.ForEnvoyGateway && !used[e.GetName()] {
			errs = append(errs, fmt.Errorf("%w: %q is served but no listener subscribes to it", ErrReference, e.GetName()))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}
