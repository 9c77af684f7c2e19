#!/usr/bin/env bash
# Creates the certificates of the xDS connection between Envoy and
# inflow-controlplane, which build/k8s requires (mutual TLS):
#
#   Secret inflow-xds-server  tls.crt, tls.key (SAN controlplane, its
#                             namespace forms), ca.crt: the control plane's
#   Secret inflow-xds-client  tls.crt, tls.key (CN inflow-envoy), ca.crt:
#                             every Envoy's
#
# Both certificates are signed by one new CA (ECDSA P-256), valid for
# DAYS days (default 365). Run it again (or use cert-manager with the same
# Secret names and keys) to renew: both sides pick the new files up for new
# connections without a restart, and Envoys keep their streams meanwhile.
#
#   build/k8s/xds-certs.sh                 # kubectl apply the Secrets in namespace inflow
#   build/k8s/xds-certs.sh --out DIR       # only write the PEM files to DIR
#   NAMESPACE=gateway DAYS=90 build/k8s/xds-certs.sh
#
# The CA key is not kept: renewal issues a new CA, and both Secrets change
# together.
set -euo pipefail

namespace=${NAMESPACE:-inflow}
days=${DAYS:-365}
out=""
if [[ ${1:-} == "--out" ]]; then
  out=${2:?--out needs a directory}
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$days" -subj "/CN=inflow-xds-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$work/ca.crt"

# issue NAME CN SAN EKU
issue() {
  key "$work/$1.key"
  openssl req -new -key "$work/$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' "$4" "$3" >"$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -sha256 -days "$days" -extfile "$work/$1.ext" -out "$work/$1.crt" 2>/dev/null
}

issue server controlplane \
  "subjectAltName=DNS:controlplane,DNS:controlplane.$namespace,DNS:controlplane.$namespace.svc,DNS:controlplane.$namespace.svc.cluster.local" \
  serverAuth
issue client inflow-envoy "" clientAuth

if [[ -n $out ]]; then
  mkdir -p "$out"
  for side in server client; do
    mkdir -p "$out/$side"
    cp "$work/$side.crt" "$out/$side/tls.crt"
    cp "$work/$side.key" "$out/$side/tls.key"
    cp "$work/ca.crt" "$out/$side/ca.crt"
  done
  echo "wrote $out/server and $out/client (tls.crt, tls.key, ca.crt)"
  exit 0
fi

for side in server client; do
  kubectl -n "$namespace" create secret generic "inflow-xds-$side" \
    --from-file=tls.crt="$work/$side.crt" --from-file=tls.key="$work/$side.key" --from-file=ca.crt="$work/ca.crt" \
    --dry-run=client -o yaml | kubectl apply -f -
done
