package translator

import (
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		p, d string
		want bool
	}{
		{"*", "*", true},
		{"*", "api.example.com", true},
		{"*", "*.example.com", true},
		{"api.example.com", "api.example.com", true},
		{"api.example.com", "*", false},
		{"api.example.com", "web.example.com", false},
		{"*.example.com", "api.example.com", true},
		{"*.example.com", "a.b.example.com", true}, // Envoy's and Gateway API's wildcards both take several labels
		{"*.example.com", "example.com", false},
		{"*.example.com", "*.api.example.com", true},
		{"*.api.example.com", "*.example.com", false},
		{"*.example.com", "*", false},
		{"api.*", "api.example.com", true},
		{"api.*", "api.internal.*", true},
		{"api.*", "*.example.com", false}, // a host both take goes to the suffix wildcard
		{"*.example.com", "api.*", false},
		{"*.com", "api.example.com", true},
	}
	for _, tt := range tests {
		if got := covers(tt.p, tt.d); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.p, tt.d, got, tt.want)
		}
	}
}

func TestServedHostsIntersects(t *testing.T) {
	tests := []struct {
		name            string
		listener, model []string
		want            []string
	}{
		{"no model hostnames", []string{"*"}, nil, []string{"*"}},
		{"any listener host", []string{"*"}, []string{"API.example.com"}, []string{"api.example.com"}},
		{"within the listener's wildcard", []string{"*.example.com"}, []string{"api.example.com"}, []string{"api.example.com"}},
		{"the listener's name within the model's wildcard", []string{"api.example.com"}, []string{"*.example.com"}, []string{"api.example.com"}},
		{"disjoint", []string{"*.example.com"}, []string{"partner.org"}, nil},
		{"some of several", []string{"a.example.com", "b.example.com", "c.org"}, []string{"*.example.com"}, []string{"a.example.com", "b.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := servedHosts(tt.listener, tt.model); !slices.Equal(got, tt.want) {
				t.Errorf("servedHosts(%v, %v) = %v, want %v", tt.listener, tt.model, got, tt.want)
			}
		})
	}
}

// TestVirtualHostsHoldWhatTheirDomainsServe: each domain's virtual host
// has every model served on the hosts Envoy would send to it, and domains
// serving the same models share one virtual host.
func TestVirtualHostsHoldWhatTheirDomainsServe(t *testing.T) {
	route := func(name string) []*routev3.Route { return []*routev3.Route{{Name: name}} }
	got := virtualHosts("public", []string{"*"}, []hostedRoutes{
		{routes: route("everywhere"), hosts: []string{"*"}},
		{routes: route("wild"), hosts: []string{"*.example.com"}},
		{routes: route("api"), hosts: []string{"api.example.com"}},
		{routes: route("two"), hosts: []string{"a.org", "b.org"}},
	})
	want := map[string][]string{ // domain -> routes
		"*":               {"everywhere"},
		"*.example.com":   {"everywhere", "wild"},
		"api.example.com": {"everywhere", "wild", "api"},
		"a.org":           {"everywhere", "two"},
		"b.org":           {"everywhere", "two"},
	}
	seen := map[string]bool{}
	for i, vh := range got {
		if (i == 0) != (vh.Name == "public") {
			t.Errorf("virtual host %d is named %q", i, vh.Name)
		}
		var names []string
		for _, r := range vh.Routes {
			names = append(names, r.Name)
		}
		for _, d := range vh.Domains {
			if seen[d] {
				t.Errorf("domain %q in two virtual hosts (Envoy refuses that)", d)
			}
			seen[d] = true
			if !slices.Equal(names, want[d]) {
				t.Errorf("domain %q serves %v, want %v", d, names, want[d])
			}
		}
	}
	if len(seen) != len(want) || len(got) != 4 {
		t.Errorf("%d virtual hosts for domains %v, want 4 for %d domains (a.org and b.org share one)", len(got), seen, len(want))
	}
}
