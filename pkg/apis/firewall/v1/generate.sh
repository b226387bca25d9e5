#!/usr/bin/env bash
# generate.sh regenerates zz_generated.deepcopy.go of the ClusterwideNetworkPolicy API and its CRD
# manifest (charts/firewall-controller/crds) with controller-gen, pinned in hack/tools/go.mod.
#
# Usage: pkg/apis/firewall/v1/generate.sh ["$(hack/tools/build.sh)"]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../../../.." && pwd)"
tools="${1:-$("${root}/hack/tools/build.sh")}"
tools="$(cd "${tools}" && pwd)"

cd "${here}"
"${tools}/controller-gen" object paths=./
"${tools}/controller-gen" crd:crdVersions=v1 paths=./ \
	output:crd:dir="${root}/charts/firewall-controller/crds"
