// Package bootstrap holds the test of the repository's envoy.yaml, the
// Envoy bootstrap that takes everything else from the control plane.
package bootstrap
