package translator

import (
	"slices"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Per-model hostnames become virtual hosts. Envoy picks one virtual host
// per request, the most specific domain matching its Host (exact, then the
// longest suffix wildcard, then the longest prefix wildcard, then "*":
// source/common/router/config_impl.cc findVirtualHost), so each domain's
// virtual host must hold every model served on the hosts it takes: the
// models with a hostname covering that domain.

// hostedRoutes are one model's routes and the hostnames it is served on in
// one listener.
type hostedRoutes struct {
	routes []*routev3.Route
	hosts  []string
}

// virtualHosts groups the listener's domains by the models served there,
// in first-seen order, the listener's own domains first: without model
// hostnames that is one virtual host, named after the listener, as before.
func virtualHosts(listener string, domains []string, models []hostedRoutes) []*routev3.VirtualHost {
	all := slices.Clone(domains)
	for _, m := range models {
		for _, h := range m.hosts {
			if !slices.Contains(all, h) {
				all = append(all, h)
			}
		}
	}
	var vhosts []*routev3.VirtualHost
	byModels := map[string]*routev3.VirtualHost{}
	for _, d := range all {
		var key strings.Builder
		var routes []*routev3.Route
		for i, m := range models {
			if slices.ContainsFunc(m.hosts, func(h string) bool { return covers(h, d) }) {
				key.WriteString(strconv.Itoa(i) + ",")
				routes = append(routes, m.routes...)
			}
		}
		if vh, ok := byModels[key.String()]; ok {
			vh.Domains = append(vh.Domains, d)
			continue
		}
		name := listener
		if len(vhosts) > 0 {
			name = listener + "/" + d
		}
		vh := &routev3.VirtualHost{Name: name, Domains: []string{d}, Routes: routes}
		byModels[key.String()] = vh
		vhosts = append(vhosts, vh)
	}
	return vhosts
}

// servedHosts is where a model with hostnames (none: everywhere) is
// served on a listener of the given domains: Gateway API's intersection,
// each pair giving the narrower pattern when one covers the other.
func servedHosts(listener, model []string) []string {
	if len(model) == 0 {
		return listener
	}
	var out []string
	add := func(h string) {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for _, m := range model {
		m = strings.ToLower(m)
		for _, l := range listener {
			switch {
			case covers(l, m):
				add(m)
			case covers(m, l):
				add(l)
			}
		}
	}
	return out
}

// covers reports whether every host domain d takes is also taken by p,
// both Envoy virtual-host domains in lower case: "*", an exact name, a
// suffix wildcard ("*.example.com") or a prefix wildcard ("api.*"). A
// prefix wildcard never covers a suffix one or the reverse: a host both
// match goes to the suffix wildcard's virtual host.
func covers(p, d string) bool {
	switch {
	case p == "*" || p == d:
		return true
	case d == "*":
		return false
	case strings.HasPrefix(p, "*"):
		suffix := p[1:]
		if s, ok := strings.CutPrefix(d, "*"); ok {
			return strings.HasSuffix(s, suffix)
		}
		return !strings.HasSuffix(d, "*") && len(d) > len(suffix) && strings.HasSuffix(d, suffix)
	case strings.HasSuffix(p, "*"):
		prefix := p[:len(p)-1]
		if s, ok := strings.CutSuffix(d, "*"); ok {
			return !strings.HasPrefix(d, "*") && strings.HasPrefix(s, prefix)
		}
		return !strings.HasPrefix(d, "*") && len(d) > len(prefix) && strings.HasPrefix(d, prefix)
	}
	return false
}
