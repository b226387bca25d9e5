#!/usr/bin/env bash
# generate.sh regenerates zz_generated.*.go of the provider config API (pkg/apis/metal and
# pkg/apis/metal/v1alpha1) with k8s.io/code-generator, pinned in hack/tools/go.mod.
# Run it from anywhere: `go generate ./pkg/apis/metal/...` or pkg/apis/metal/v1alpha1/generate.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../../../.." && pwd)"
tools="$("${root}/hack/tools/build.sh")"
boilerplate="$(mktemp)"
trap 'rm -f "${boilerplate}"' EXIT

cd "${root}"
pkg=github.com/metalforge/metalforge/pkg/apis/metal
"${tools}/deepcopy-gen" --go-header-file "${boilerplate}" --output-file zz_generated.deepcopy.go \
	"${pkg}" "${pkg}/v1alpha1"
"${tools}/defaulter-gen" --go-header-file "${boilerplate}" --output-file zz_generated.defaults.go \
	"${pkg}/v1alpha1"
"${tools}/conversion-gen" --go-header-file "${boilerplate}" --output-file zz_generated.conversion.go \
	"${pkg}/v1alpha1"
