# metalforge — the build contract. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VERSION   := $(shell cat VERSION)
BIN       := bin
CACHE     ?= $(HOME)/.cache/metalforge
GO        ?= go
LDFLAGS   := -s -w -X main.version=$(VERSION)
export METALFORGE_CACHE := $(CACHE)

BINARIES := metal-api metalctl boot-server bmc-agent metal-lab metal-bench metal-phonehome metal-ccm switch-agent \
	firewall-controller gardener-extension-provider-metal machine-controller-manager-provider-metal metal-autoscaler

# Debian packages the builds, the lab and the tests need (installed by hack/deps.sh when missing).
DEBS := protobuf-compiler postgresql qemu-system-x86 ipxe-qemu ipxe qemu-utils openipmi ipmitool \
	kmod cpio e2fsprogs dosfstools gdisk zstd busybox-static dnsmasq-base mmdebstrap curl \
	frr frr-pythontools lldpd nftables mdadm lvm2

# Fuzz targets run for FUZZTIME each in `make test` (package:target).
FUZZTIME ?= 10s
FUZZ := ./pkg/rest:FuzzDecodeAllocate ./pkg/rest:FuzzDecodeEntities ./pkg/size:FuzzMatch \
	./pkg/ipam:FuzzNextFreeChildPrefix ./pkg/ipam:FuzzParsePrefixes

.PHONY: help
help: ## show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Debian packages builds and tests need (idempotent)
	@hack/deps.sh $(DEBS)

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

.PHONY: test
test: deps verify kube ## run every test tier: unit, store (SQLite, PostgreSQL), kube-apiserver, netns, QEMU lab e2e, fuzz seeds
	$(GO) test -count=1 -timeout 40m ./...
	$(GO) test -race -count=1 -timeout 20m ./pkg/store/... ./pkg/machine/... ./pkg/rest/... ./pkg/auth/...
	@for f in $(FUZZ); do \
		pkg=$${f%%:*}; target=$${f##*:}; \
		echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

.PHONY: kube
kube: ## build kube-apiserver and etcd for the controller tests once (cached outside the repo)
	@hack/kube.sh >/dev/null

.PHONY: bench
bench: deps build ## print speed figures: API latency and allocation rate, boot-server vs dnsmasq, IPAM
	$(BIN)/metal-bench $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench BootClients -benchtime 1x ./pkg/boot
	$(GO) test -run '^$$' -bench Provisioning -benchtime 1x ./pkg/lab
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./pkg/ipam/
	$(GO) test -run '^$$' -bench BenchmarkServiceIngress -benchtime 3x ./pkg/ccm
	$(GO) test -run '^$$' -bench . ./switch-agent/render
	$(GO) test -run '^$$' -bench . -benchtime 5x ./pkg/nft
	$(GO) test -run '^$$' -bench . -benchtime 5x ./controllers/firewall
	$(GO) test -run '^$$' -bench Throughput -benchtime 20000x ./pkg/dnsproxy
	$(GO) test -run '^$$' -bench IncreaseSize -benchtime 30x -v ./pkg/autoscaler

.PHONY: lab
lab: deps build ## a local bare-metal lab: netns fabric, metal-api, boot-server, bmc-agent, QEMU machines
	$(BIN)/metal-lab up --machines $(or $(MACHINES),2)

.PHONY: lab-down
lab-down: ## remove everything make lab created
	$(BIN)/metal-lab down

.PHONY: control-plane
control-plane: deps build ## only metal-api on embedded SQLite with example/ seed data (Ctrl-C stops it)
	@hack/lab.sh

.PHONY: generate
generate: ## regenerate the OpenAPI spec, the REST client, the gRPC code, deepcopy/conversions and CRDs
	$(GO) test ./pkg/rest -run TestSpecCommitted -update >/dev/null
	@tools=$$(hack/tools/build.sh); \
	pkg/bootrpc/bootpb/gen.sh "$$tools"; \
	pkg/client/gen.sh "$$tools"; \
	pkg/autoscaler/externalgrpc/gen.sh "$$tools"; \
	pkg/apis/firewall/v1/generate.sh "$$tools"; \
	pkg/apis/metal/v1alpha1/generate.sh

.PHONY: verify
verify: ## fail on drift: generated files, go mod tidy, gofmt, go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(MAKE) generate
	@git diff --exit-code -- pkg/client pkg/bootrpc/bootpb pkg/autoscaler/externalgrpc pkg/apis charts/firewall-controller/crds || { echo "generated files drifted: run make generate"; exit 1; }

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
