# The commands of the README. Every target installs what it needs first.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# As systemd/sagad.service runs sagad (README, "sagad").
SAGAD_TUNABLES ?= glibc.malloc.tcache_count=100

.PHONY: deps build run test test-asan asan-build bench clean format package

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p .saga
	GLIBC_TUNABLES=$(SAGAD_TUNABLES) $(BUILD)/bin/sagad --workflows workflows --plugins $(BUILD)/plugins \
	  --state .saga/state --socket .saga/sagad.sock

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Benchmarks against a fresh sagad; prints one table (bench/README.md).
bench: build
	@SAGAD_TUNABLES=$(SAGAD_TUNABLES) /usr/bin/python3 bench/bench.py --build $(BUILD)

# A Debian package of sagad, sagactl, the plugins, the SDK and the systemd unit, in $(BUILD)/.
package: build
	@cd $(BUILD) && cpack -G DEB

asan-build: deps
	@cmake -S . -B $(ASAN_BUILD) -DSAGA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DSAGA_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# intercept_tls_get_addr=0: LeakSanitizer's tracking of dynamic TLS (libcurl and its TLS libraries,
# loaded by the http plugin) reads a bogus range with this GCC's runtime and dies at exit.
test-asan: asan-build
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:intercept_tls_get_addr=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 600

format:
	@git ls-files '*.cpp' '*.hpp' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
