// Package check keeps the shipped artefacts honest where no Docker engine,
// Envoy or Kubernetes cluster exists: the Dockerfiles, the compose demo and
// the Kubernetes manifests are parsed by the same libraries their tools use
// (compose-go, kustomize's krusty, client-go's scheme, Envoy Gateway's API
// types) and checked against the files they name, the ports envoy.yaml and
// the control-plane config use, and build/versions.env.
//
// It is a separate module so that those dependencies (Kubernetes, Envoy
// Gateway, compose-go) never reach the filter's go.mod. Run it with
//
//	make check-artefacts     # or: cd build/check && go test ./...
package check
