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

BINARIES := metal-api metalctl

# Fuzz targets run for FUZZTIME each in `make test` (package:target).
FUZZTIME ?= 10s
FUZZ := ./pkg/rest:FuzzDecodeAllocate ./pkg/rest:FuzzDecodeEntities ./pkg/size:FuzzMatch \
	./pkg/ipam:FuzzNextFreeChildPrefix ./pkg/ipam:FuzzParsePrefixes

.PHONY: help
help: ## show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Debian packages builds and tests need (idempotent)
	@hack/deps.sh

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

.PHONY: test
test: deps verify ## run every test tier (unit, store conformance on SQLite and PostgreSQL, process, fuzz seeds)
	$(GO) test -count=1 -timeout 40m ./...
	$(GO) test -race -count=1 -timeout 20m ./pkg/store/... ./pkg/machine/... ./pkg/rest/... ./pkg/auth/...
	@for f in $(FUZZ); do \
		pkg=$${f%%:*}; target=$${f##*:}; \
		echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

.PHONY: bench
bench: deps build ## print speed figures: API latency and allocation rate on SQLite and PostgreSQL
	$(GO) run ./cmd/metal-bench $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./pkg/ipam/

.PHONY: lab
lab: deps build ## start a local control plane with seed data from example/ (Ctrl-C stops it)
	@hack/lab.sh

.PHONY: generate
generate: ## regenerate the OpenAPI spec, the REST client and the gRPC code
	$(GO) test ./pkg/rest -run TestSpecCommitted -update >/dev/null
	@tools=$$(hack/tools/build.sh); \
	pkg/bootrpc/bootpb/gen.sh "$$tools"; \
	pkg/client/gen.sh "$$tools"

.PHONY: verify
verify: ## fail on drift: generated files, go mod tidy, gofmt, go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(MAKE) generate
	@git diff --exit-code -- pkg/client pkg/bootrpc/bootpb || { echo "generated files drifted: run make generate"; exit 1; }

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
