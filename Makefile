# The README's commands. CMake does the work; this file only names the jobs.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build run test bench deps install deb clean format

all: build

$(BUILD)/CMakeCache.txt:
	@scripts/deps.sh build
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The main job: weir on examples/weir.ini (an SQLite demo over HTTP on
# 127.0.0.1:8080, the PostgreSQL door on 127.0.0.1:6432). Paths in the file
# are relative to examples/. Builds weir alone (no tests, no benchmarks);
# Ctrl-C stops it (SIGINT: a safe shutdown).
run: $(BUILD)/CMakeCache.txt
	@scripts/deps.sh build
	cmake --build $(BUILD) -j $(JOBS) --target weir
	@echo
	@echo "weir is starting on the embedded SQLite demo (examples/weir.ini):"
	@echo "  open     http://127.0.0.1:8080/          (user demo, password demo)"
	@echo "  psql     psql 'host=127.0.0.1 port=6432 dbname=demo user=demo password=demo'"
	@echo "  console  psql 'host=127.0.0.1 port=6432 dbname=pgbouncer user=demo password=demo' -c 'SHOW POOLS'"
	@echo "  stop     Ctrl-C"
	@echo
	cd examples && exec $(abspath $(BUILD))/weir weir.ini

# Install what the suite needs (Debian, as root), build, run everything.
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: deps build
	@echo "benchmarks in $(BUILD)/bench: cycle, loops, adaptive, expiry, idle, pg, sqlite, zdb, mysql, curl, server, http, tls, page, lines, relay (each takes --quick); see docs/BENCHMARKS.md"

deps:
	@scripts/deps.sh

install: build
	cmake --install $(BUILD)

# Debian packages (weir, libweir-dev) in build-deb/: see scripts/mkdeb.sh
deb: deps
	scripts/mkdeb.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-deb
