package kube

import (
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
)

// ActivePortsAnnotation narrows which of a pool's target ports a pod serves
// (the EPP's annotation: a comma-separated list of port numbers).
const ActivePortsAnnotation = "inference.networking.k8s.io/active-ports"

// poolSelector is the pool's matchLabels as a label selector. An empty
// selector matches nothing (the CRD requires at least one label; a Service
// with no selector selects no pods either).
func poolSelector(p *giev1.InferencePool) labels.Selector {
	if len(p.Spec.Selector.MatchLabels) == 0 {
		return labels.Nothing()
	}
	set := make(labels.Set, len(p.Spec.Selector.MatchLabels))
	for k, v := range p.Spec.Selector.MatchLabels {
		set[string(k)] = string(v)
	}
	return labels.SelectorFromSet(set)
}

// Endpoints are the pool's "ip:port" endpoints, chosen the way the EPP
// (v1.5.0, pkg/epp/datastore) chooses them: pods of the pool's namespace
// matching its selector, Ready and not being deleted, one endpoint per
// target port, narrowed by the active-ports annotation when present (an
// empty annotation serves no port). Pods without an IP are skipped: they
// cannot be reached yet. The result is sorted, so the same pods always
// give the same config.
func Endpoints(p *giev1.InferencePool, pods []*corev1.Pod) []string {
	sel := poolSelector(p)
	ports := make([]int, 0, len(p.Spec.TargetPorts))
	for _, tp := range p.Spec.TargetPorts {
		ports = append(ports, int(tp.Number))
	}
	out := []string{}
	for _, pod := range pods {
		if pod.Namespace != p.Namespace || !sel.Matches(labels.Set(pod.Labels)) || !podReady(pod) || pod.Status.PodIP == "" {
			continue
		}
		for _, port := range activePorts(pod, ports) {
			out = append(out, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// podReady is the EPP's IsPodReady: no deletionTimestamp, condition Ready
// True.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// activePorts is the subset of targets the pod's annotation names, or all
// of them without the annotation. Entries that are not target ports are
// ignored, as the EPP does; unlike its Sscanf, "8000x" is not read as 8000.
func activePorts(p *corev1.Pod, targets []int) []int {
	v, ok := p.Annotations[ActivePortsAnnotation]
	if !ok {
		return targets
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err == nil && n > 0 && slices.Contains(targets, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
