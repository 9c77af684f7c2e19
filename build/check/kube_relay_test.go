package check

import (
	"net"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// argAfter is the value following flag in args ("" when absent).
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// The relay component (build/k8s/relay) switches on the state relay on
// every control-plane replica, linked through a headless Service, as
// docs/deploy.md describes: the flags name a Service that exists and
// selects the control-plane pods on the relay's port, the Envoys' Service
// carries that port, and the NetworkPolicy opens it only to the Envoy and
// control-plane pods while leaving xDS and admin as they were. Without the
// component the relay is off.
func TestKustomizeRelayComponent(t *testing.T) {
	if args := deployment(t, build(t, "build/k8s"), "inflow-controlplane").Spec.Template.Spec.Containers[0].Args; slices.Contains(args, "--relay-address") {
		t.Errorf("the base switches the relay on: %v", args)
	}
	objs := build(t, "build/check/testdata/relay")
	cp := deployment(t, objs, "inflow-controlplane")
	c := cp.Spec.Template.Spec.Containers[0]
	relayPort := -1
	for _, p := range c.Ports {
		if p.Name == "relay" {
			relayPort = int(p.ContainerPort)
		}
	}
	if _, port, err := net.SplitHostPort(argAfter(c.Args, "--relay-address")); err != nil || port != strconv.Itoa(relayPort) {
		t.Fatalf("--relay-address %q (%v), container port relay %d", argAfter(c.Args, "--relay-address"), err, relayPort)
	}
	peersHost, peersPort, err := net.SplitHostPort(argAfter(c.Args, "--relay-peers"))
	if err != nil {
		t.Fatalf("--relay-peers %q: %v", argAfter(c.Args, "--relay-peers"), err)
	}
	podLabels := cp.Spec.Template.Labels
	servesRelay := func(s *corev1.Service, port string) bool {
		return labelsMatch(s.Spec.Selector, podLabels) && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
			return strconv.Itoa(int(p.Port)) == port && p.TargetPort.String() == "relay"
		})
	}
	host, _, err := ControlPlaneAddress(kubeBootstrap(t, objs))
	if err != nil {
		t.Fatal(err)
	}
	var peers, envoys bool
	for _, s := range of[*corev1.Service](objs) {
		switch s.Name {
		case peersHost:
			peers = s.Spec.ClusterIP == corev1.ClusterIPNone && servesRelay(s, peersPort)
		case host:
			envoys = servesRelay(s, strconv.Itoa(relayPort))
		}
	}
	if !peers {
		t.Errorf("--relay-peers names %s:%s: want a headless Service selecting the control-plane pods on that port", peersHost, peersPort)
	}
	if !envoys {
		t.Errorf("the Service %s the Envoys dial has no relay port %d", host, relayPort)
	}

	envoyLabels := deployment(t, objs, "inflow-envoy").Spec.Template.Labels
	pols := of[*networkingv1.NetworkPolicy](objs)
	if len(pols) != 1 || !labelsMatch(pols[0].Spec.PodSelector.MatchLabels, podLabels) {
		t.Fatalf("want one NetworkPolicy selecting the control-plane pods, got %d", len(pols))
	}
	open, relayFrom := map[string]bool{}, map[string]bool{}
	for _, rule := range pols[0].Spec.Ingress {
		for _, p := range rule.Ports {
			if len(rule.From) == 0 {
				open[p.Port.String()] = true
				continue
			}
			for _, f := range rule.From {
				if p.Port.String() == "relay" && f.PodSelector != nil {
					relayFrom["envoy"] = relayFrom["envoy"] || labelsMatch(f.PodSelector.MatchLabels, envoyLabels)
					relayFrom["controlplane"] = relayFrom["controlplane"] || labelsMatch(f.PodSelector.MatchLabels, podLabels)
				}
			}
		}
	}
	if !open["xds"] || !open["admin"] || open["relay"] || !relayFrom["envoy"] || !relayFrom["controlplane"] {
		t.Errorf("NetworkPolicy: open to all %v, relay from %v: want xds and admin open, relay from the Envoy and control-plane pods only", open, relayFrom)
	}
}
