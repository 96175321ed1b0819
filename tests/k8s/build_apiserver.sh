#!/usr/bin/env bash
# Builds kube-apiserver 1.20 from Debian's `kubernetes` source package and installs etcd, so that
# tests/test_cluster_cli.py can run `edn cluster` against a real API server. Idempotent: the
# binary is cached outside the clone (EDN_APISERVER_CACHE, default /var/cache/edn), and a second
# run only checks it. Needs root and apt (Debian 12); the first build took 15 minutes here (2 cores
# shared with other work), a rebuild from the kept sources under 2.
set -euo pipefail

CACHE="${EDN_APISERVER_CACHE:-/var/cache/edn}"
BIN="$CACHE/kube-apiserver"

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1 && command -v etcd >/dev/null; then
    echo "build_apiserver: $BIN present ($("$BIN" --version))"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# `apt-get source` needs deb-src entries; Debian 12's deb822 file lists only binary ones.
if [ -f /etc/apt/sources.list.d/debian.sources ] && ! grep -q '^Types:.*deb-src' /etc/apt/sources.list.d/debian.sources; then
    sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
fi
apt-get update -qq
# golang-1.19: the oldest Go in Debian 12, nearest to the Go 1.15 Kubernetes 1.20 was made with.
apt-get install -y -qq --no-install-recommends etcd-server golang-1.19-go \
    golang-github-modern-go-reflect2-dev dpkg-dev rsync jq make >/dev/null

mkdir -p "$CACHE/src"
cd "$CACHE/src"
if [ ! -d k8s ]; then
    apt-get source --download-only kubernetes
    dpkg-source -x kubernetes_*.dsc k8s
fi
cd k8s
# The vendored reflect2 1.0.1 relies on Go runtime internals that changed in Go 1.18; Debian's
# 1.0.2 is the same API with the fix. (GOPATH mode below reads vendor/ as files: no go.mod check.)
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2

# Kubernetes' own make (as Debian's rules use it): it generates the OpenAPI definitions and other
# zz_generated files first, then builds from vendor/ in GOPATH mode (its own GOPATH and build
# cache under _output/, so a rerun after a failure is incremental).
env PATH="/usr/lib/go-1.19/bin:$PATH" HOME="$CACHE" KUBE_GIT_VERSION=v1.20.2 \
    GOLDFLAGS="-s -w" make WHAT=cmd/kube-apiserver
cp _output/bin/kube-apiserver "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "build_apiserver: built $BIN ($("$BIN" --version))"
