# Lanyard developer tasks. `make test` is the one command CI runs (.ci/run).
#
#   make build   build bin/lanyard
#   make run     build, then start the server (./bin/lanyard serve; configure with LANYARD_* env)
#   make test    go vet, then every test with the race detector (fuzz seed corpora included)
#   make bench   token issuance load test against a fresh local server (see docs/benchmarks.md)
#   make bench-attest  issuance with and without a current attestation, then POST /v1/attestations
#   make bench-compare Lanyard vs Ory Hydra v2.3.0, same machine, stores and load (docs/benchmarks.md)
#   make bench-scale   1,000 then 1,000,000 agents in PostgreSQL: issuance, introspection, listing, RSS
#   make certs   development TLS CA and server certificate in certs/ (see certs/README.md)
#   make fuzz    run each fuzz target for FUZZTIME (optional; not part of CI)
#   make vault   build the Vault server the tests use, once, into $(VAULT_BIN)
#   make fmt | vet | clean

GO           ?= go
BIN          ?= bin/lanyard
# The whole suite runs in a few minutes on 2 cores; the timeout catches a hung test
# well inside CI's budget.
TEST_TIMEOUT ?= 15m
FUZZTIME     ?= 15s
BENCH_FLAGS  ?= -c 64 -d 20s -warmup 3s
# The Vault dev server the tests start (test/tools/vault pins the version). It is built
# from the Go module proxy once, into a cache outside the working tree so that a fresh
# clone finds it, and never rebuilt while present.
VAULT_VERSION ?= v1.19.5
VAULT_BIN     ?= $(HOME)/.cache/lanyard/vault-$(VAULT_VERSION)
export LANYARD_TEST_VAULT_BIN := $(VAULT_BIN)

.PHONY: all build run test vet fmt bench bench-attest certs fuzz vault clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/lanyard

run: build
	./$(BIN) serve

vet:
	$(GO) vet ./...

# go test runs every Fuzz function's seed corpus (f.Add and testdata/fuzz/) as an
# ordinary test, so the fuzz targets' known inputs are checked on every run.
# The TPM tests drive swtpm and tpm2-tools, the web UI's browser tests Debian's chromium:
# the scripts install them when missing (needs root and apt-get; otherwise those tests
# skip, or fail under LANYARD_REQUIRE_SERVICES=1).
test: vet vault
	sh test/tools/install-tpm-tools.sh
	sh test/tools/install-chromium.sh
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Builds the server and the load generator, which starts the server on a random
# 127.0.0.1 port with a temp data dir, registers an ES256 agent, and reports tokens/s,
# latency percentiles, errors and server CPU per 1,000 tokens. Override BENCH_FLAGS,
# e.g. make bench BENCH_FLAGS='-c 16 -d 10s -database-url postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
bench: build
	$(GO) build -o bin/lanyard-bench ./test/bench
	./bin/lanyard-bench -bin $(BIN) $(BENCH_FLAGS)

# Plain issuance, issuance through the attestation gate (the agent has a current verdict),
# then the attestation endpoint itself (challenges fetched before the clock starts).
ATTEST_BENCH_FLAGS ?= -c 64 -d 20s -warmup 3s
bench-attest: build
	$(GO) build -o bin/lanyard-bench ./test/bench
	./bin/lanyard-bench -bin $(BIN) $(ATTEST_BENCH_FLAGS)
	./bin/lanyard-bench -bin $(BIN) -attested $(ATTEST_BENCH_FLAGS)
	./bin/lanyard-bench -bin $(BIN) -mode attest -rate 1200 -c 16 -d 10s -warmup 2s -server-env LANYARD_ATTESTATION_MAX_CHALLENGES=100000

# Lanyard and Ory Hydra side by side on SQLite, then PostgreSQL (BENCH_DATABASE_URL; a
# fresh schema for Lanyard and a fresh database for Hydra each run), at 1, 16 and 64
# clients, 3 runs each, alternating: about 20 minutes. Hydra is built once from its own
# module (test/bench/hydra, never in Lanyard's go.mod) into $(HYDRA_BIN). Override
# COMPARE_FLAGS, e.g. COMPARE_FLAGS='-stores postgres -clients 64'. Needs PostgreSQL
# on 127.0.0.1:5432 for the postgres store (bash .ci/run starts it).
HYDRA_BIN          ?= bin/hydra-v2.3.0
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
COMPARE_FLAGS      ?=
SCALE_FLAGS        ?=
.PHONY: bench-compare bench-scale
bench-compare: build
	$(GO) build -o bin/lanyard-bench ./test/bench
	@test -x $(HYDRA_BIN) || sh test/bench/hydra/build.sh $(HYDRA_BIN)
	./bin/lanyard-bench compare -bin $(BIN) -hydra $(HYDRA_BIN) -database-url '$(BENCH_DATABASE_URL)' $(COMPARE_FLAGS)

# Bulk-loads 1,000 then 1,000,000 agents (COPY) into a fresh PostgreSQL schema and
# measures issuance, introspection, GET /v1/agents pages and the server's peak RSS at
# each size, with the query plans. Override SCALE_FLAGS, e.g. SCALE_FLAGS='-sizes 1000,100000'.
bench-scale: build
	$(GO) build -o bin/lanyard-bench ./test/bench
	./bin/lanyard-bench scale -bin $(BIN) -database-url '$(BENCH_DATABASE_URL)' $(SCALE_FLAGS)

certs:
	sh certs/gen.sh

# Each fuzz target runs alone (go test -fuzz takes one target and one package).
fuzz:
	@set -e; for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

vault:
	@test -x $(VAULT_BIN) || sh test/tools/vault/build.sh $(VAULT_BIN)

clean:
	rm -rf bin/
	$(GO) clean -testcache
