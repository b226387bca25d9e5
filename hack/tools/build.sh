#!/usr/bin/env bash
# build.sh builds the code generators pinned in hack/tools/go.mod (via `tool`
# directives) into a cache directory outside the repository and prints that
# directory on the last line of stdout. Logs go to stderr.
#
# The cache key is the first 12 hex digits of sha256(hack/tools/go.sum), so a
# version bump in go.mod/go.sum yields a fresh directory and an unchanged
# go.sum reuses the binaries already built:
#
#   ${METALFORGE_CACHE:-$HOME/.cache/metalforge}/tools/<key>/bin
#
# Usage: PATH="$(hack/tools/build.sh):$PATH"
set -euo pipefail

tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${METALFORGE_CACHE:-${HOME:-/root}/.cache/metalforge}"

# Tool package path -> binary name. Keep in sync with the tool directives in go.mod.
tools=(
	github.com/go-swagger/go-swagger/cmd/swagger
	google.golang.org/protobuf/cmd/protoc-gen-go
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	k8s.io/code-generator/cmd/conversion-gen
	k8s.io/code-generator/cmd/deepcopy-gen
	k8s.io/code-generator/cmd/defaulter-gen
	sigs.k8s.io/controller-tools/cmd/controller-gen
)

log() { printf 'hack/tools: %s\n' "$*" >&2; }

key="$(sha256sum "${tools_dir}/go.sum" | cut -c1-12)"
bin_dir="${cache_root}/tools/${key}/bin"

missing=()
for pkg in "${tools[@]}"; do
	name="${pkg##*/}"
	if [[ ! -x "${bin_dir}/${name}" ]]; then
		missing+=("${pkg}")
	fi
done

if ((${#missing[@]} > 0)); then
	mkdir -p "${bin_dir}"
	# Build into a temporary directory next to the final one and move each
	# binary into place, so an interrupted build never leaves a truncated
	# binary that a later run would take as present.
	tmp="$(mktemp -d "${bin_dir}/.build.XXXXXX")"
	trap 'rm -rf "${tmp}"' EXIT
	for pkg in "${missing[@]}"; do
		name="${pkg##*/}"
		log "building ${name} into ${bin_dir}"
		# -C runs in the tools module so its go.mod/go.sum pin the versions,
		# whatever the caller's working directory or go.work.
		GOWORK=off \
			go build -C "${tools_dir}" -trimpath -o "${tmp}/${name}" "${pkg}" >&2
		mv -f "${tmp}/${name}" "${bin_dir}/${name}"
	done
else
	log "up to date: ${bin_dir}"
fi

printf '%s\n' "${bin_dir}"
