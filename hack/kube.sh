#!/usr/bin/env bash
# kube.sh builds the control-plane binaries the Kubernetes test tier runs
# (kube-apiserver and etcd, pinned in hack/tools/envtest/go.mod) from source
# through the Go module proxy, into a cache directory outside the repository,
# and prints that directory on the last line of stdout. Logs go to stderr.
#
#   ${METALFORGE_CACHE:-$HOME/.cache/metalforge}/kube/<k8s version>-<key>/
#
# <key> is the first 12 hex digits of sha256(hack/tools/envtest/go.sum), so a
# version bump yields a fresh directory and an unchanged go.sum reuses what is
# there: the build is skipped when both binaries are present. Point
# controller-runtime's envtest at it with KUBEBUILDER_ASSETS (pkg/kubetest
# does this itself).
#
# A cold build takes ~5 min on 2 cores with a peak RSS of ~2.3 GB; a warm Go
# build cache brings it to seconds.
#
# Usage: KUBEBUILDER_ASSETS="$(hack/kube.sh)" go test ./pkg/ccm/...
#        hack/kube.sh --print   # print the directory without building
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo}/hack/tools/envtest"
cache_root="${METALFORGE_CACHE:-${HOME:-/root}/.cache/metalforge}"

log() { printf 'hack/kube.sh: %s\n' "$*" >&2; }

# The Kubernetes version comes from the tools module, so go.mod is the one
# place that pins it.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "${tools_dir}/go.mod")"
if [[ -z "${k8s_version}" ]]; then
	log "no k8s.io/kubernetes requirement in ${tools_dir}/go.mod"
	exit 1
fi
key="$(sha256sum "${tools_dir}/go.sum" | cut -c1-12)"
dir="${cache_root}/kube/${k8s_version}-${key}"

if [[ "${1:-}" == "--print" ]]; then
	printf '%s\n' "${dir}"
	exit 0
fi

if [[ -x "${dir}/kube-apiserver" && -x "${dir}/etcd" ]]; then
	log "up to date: ${dir}"
	printf '%s\n' "${dir}"
	exit 0
fi

# One build at a time per cache directory: a second caller (a parallel test
# package, a second make) waits for the first instead of doubling the 2 GB.
mkdir -p "${cache_root}/kube"
exec 9>"${cache_root}/kube/.lock"
flock 9
if [[ -x "${dir}/kube-apiserver" && -x "${dir}/etcd" ]]; then
	log "built by another caller: ${dir}"
	printf '%s\n' "${dir}"
	exit 0
fi

minor="${k8s_version#v}"
major="${minor%%.*}"
minor="${minor#*.}"
minor="${minor%%.*}"
vpkg=k8s.io/component-base/version
ldflags="-s -w -X ${vpkg}.gitVersion=${k8s_version} -X ${vpkg}.gitMajor=${major} -X ${vpkg}.gitMinor=${minor}"

mkdir -p "${dir}"
# Build into a temporary directory and move each binary into place, so an
# interrupted build never leaves a truncated binary that a later run would
# take as present.
tmp="$(mktemp -d "${dir}/.build.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT

start=${SECONDS}
log "building kube-apiserver ${k8s_version} and etcd into ${dir} (cold: ~5 min)"
# -C runs in the tools module so its go.mod/go.sum pin the versions,
# whatever the caller's working directory or go.work.
GOWORK=off CGO_ENABLED=0 go build -C "${tools_dir}" -trimpath -ldflags "${ldflags}" \
	-o "${tmp}/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
GOWORK=off CGO_ENABLED=0 go build -C "${tools_dir}" -trimpath -ldflags "-s -w" \
	-o "${tmp}/etcd" go.etcd.io/etcd/server/v3 >&2
mv -f "${tmp}/etcd" "${dir}/etcd"
mv -f "${tmp}/kube-apiserver" "${dir}/kube-apiserver"
log "built in $((SECONDS - start)) s: $("${dir}/kube-apiserver" --version), etcd $("${dir}/etcd" --version | awk 'NR == 1 {print $3}')"

printf '%s\n' "${dir}"
