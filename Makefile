# Lanyard developer tasks. `make test` is the one command CI runs (.ci/run).
#
#   make build   build bin/lanyard
#   make run     build, then start the server (./bin/lanyard serve; configure with LANYARD_* env)
#   make test    go vet, then every test with the race detector (fuzz seed corpora included)
#   make bench   token issuance load test against a fresh local server (see docs/benchmarks.md)
#   make certs   development TLS CA and server certificate in certs/ (see certs/README.md)
#   make fuzz    run each fuzz target for FUZZTIME (optional; not part of CI)
#   make fmt | vet | clean

GO           ?= go
BIN          ?= bin/lanyard
# The whole suite runs in a few minutes on 2 cores; the timeout catches a hung test
# well inside CI's budget.
TEST_TIMEOUT ?= 15m
FUZZTIME     ?= 15s
BENCH_FLAGS  ?= -c 64 -d 20s -warmup 3s

.PHONY: all build run test vet fmt bench certs fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/lanyard

run: build
	./$(BIN) serve

vet:
	$(GO) vet ./...

# go test runs every Fuzz function's seed corpus (f.Add and testdata/fuzz/) as an
# ordinary test, so the fuzz targets' known inputs are checked on every run.
# The web UI's browser tests need Debian's chromium: the script installs it when it is
# missing (as root), else they skip (or fail under LANYARD_REQUIRE_SERVICES=1).
test: vet
	sh scripts/ensure-chromium.sh
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

clean:
	rm -rf bin/
	$(GO) clean -testcache
