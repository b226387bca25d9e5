#!/usr/bin/env bash
# gen.sh regenerates externalgrpc.pb.go and externalgrpc_grpc.pb.go from externalgrpc.proto with protoc and the plugins
# pinned in hack/tools. Usage: pkg/autoscaler/externalgrpc/gen.sh "$(hack/tools/build.sh)"
set -euo pipefail

bin_dir="${1:?usage: gen.sh TOOLS_BIN_DIR}"
bin_dir="$(cd "${bin_dir}" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cd "${here}"
protoc \
	--plugin=protoc-gen-go="${bin_dir}/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="${bin_dir}/protoc-gen-go-grpc" \
	--proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	externalgrpc.proto
