#!/usr/bin/env bash
# Installs the Debian packages Inflow's build and tests need, if missing.
# The ABI test host links libevent (with its OpenSSL bufferevents), OpenSSL
# (upstream TLS) and jansson; pkg-config finds them.
# build/check runs build/k8s/xds-certs.sh, which needs openssl.
set -euo pipefail
packages=(pkg-config libevent-dev libjansson-dev libssl-dev openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
