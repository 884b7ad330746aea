# unwedge: the two commands are `make demo` and `make test` (`make install PREFIX=DIR` installs).
SHELL := /bin/bash
BUILD ?= build
JOBS ?= 2
PREFIX_PATH ?=
PREFIX ?= /usr/local
CMAKE_ARGS ?=
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR ?= $(HOME)/.cache/ccache
# Paths under this folder are hashed relative to it, so a clone in another folder reuses the cache.
export CCACHE_BASEDIR := $(CURDIR)

# `make test SANITIZE=1`: the same tests on a build with AddressSanitizer (+ LeakSanitizer) and
# UndefinedBehaviorSanitizer in build-sanitize/ (LibTorch itself is not instrumented; the
# suppressions in tests/sanitize/ name only what is inside it).
ifeq ($(SANITIZE),1)
BUILD := build-sanitize
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# (no Python package: an instrumented module cannot be loaded by an uninstrumented python3)
CMAKE_ARGS += -DCMAKE_CXX_FLAGS="$(SANITIZE_FLAGS)" -DUNWEDGE_BUILD_BENCH=OFF -DUNWEDGE_PYTHON=OFF
# A sanitizer report exits with status 86, not the default 1 (unwedge's own error status, which
# many CLI checks expect): a report on an error path cannot pass for the expected refusal.
export ASAN_OPTIONS := detect_leaks=1:abort_on_error=0:detect_odr_violation=0:exitcode=86
export LSAN_OPTIONS := suppressions=$(CURDIR)/tests/sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1:exitcode=86:suppressions=$(CURDIR)/tests/sanitize/ubsan.supp
endif

# What the build needs: the compiler, CMake and ccache, LibTorch and the libraries the code
# includes (CLI11, JSON, YAML, spdlog, libpng, zlib to verify model files, gemmi for atomic
# models, Gloo's headers for the distributed backend, GoogleTest for the test programs), the BLAS
# LibTorch runs fastest with, and pybind11 with Python's headers for the Python package.
BUILD_PACKAGES := build-essential cmake ccache libtorch-dev libopenblas0-pthread libcli11-dev \
  nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libpng-dev zlib1g-dev gemmi-dev libgloo-dev \
  libgtest-dev pybind11-dev python3-dev
# What only the tests use: an independent MRC reader (mrcfile, numpy), the SSIM reference
# (scikit-image), a real browser for the HTML report and the masking demo's page (Chromium; PIL
# reads its screenshots), pytest for the Python package, an independent STAR reader (gemmi's
# Python module) and torch for the package's tensor calls (python3-torch: the same source package
# and version as libtorch-dev).
TEST_PACKAGES := python3-numpy python3-mrcfile python3-skimage python3-pil chromium \
  python3-pytest python3-gemmi python3-torch

# What only `make fuzz` uses: clang with its sanitizer and libFuzzer runtimes.
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev libfuzzer-14-dev
FUZZ_BUILD ?= build-fuzz
# Executions per fuzz target (`make fuzz FUZZ_RUNS=1000` for a quick look).
FUZZ_RUNS ?= 1000000

.PHONY: all deps test-deps build cli test demo install bench clean fuzz

all: build

deps:
	@bash scripts/install-deps.sh $(BUILD_PACKAGES)

test-deps:
	@bash scripts/install-deps.sh $(TEST_PACKAGES)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release \
	  $(if $(PREFIX_PATH),-DCMAKE_PREFIX_PATH=$(PREFIX_PATH)) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

test: build test-deps
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Only the program: the demo and an installation need no test or benchmark program.
cli: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS) --target unwedge_cli

demo: cli
	bash scripts/demo.sh $(BUILD)/unwedge

# Installs bin/unwedge, share/unwedge/ (the shipped maps) and, when it is built, the Python
# package (lib/python3.X/dist-packages/unwedge) under PREFIX (default /usr/local).
install: cli
	@if [ -d $(BUILD)/CMakeFiles/unwedge_python.dir ]; then \
	  cmake --build $(BUILD) -j$(JOBS) --target unwedge_python; fi
	cmake --install $(BUILD) --prefix $(PREFIX)

bench: build
	bash scripts/bench.sh $(BUILD)

# The libFuzzer targets (tests/fuzz) in their own build folder, built with clang and
# AddressSanitizer + UndefinedBehaviorSanitizer, then run one after the other (scripts/fuzz.sh).
fuzz: deps
	@bash scripts/install-deps.sh $(FUZZ_PACKAGES)
	test -f $(FUZZ_BUILD)/CMakeCache.txt || cmake -S . -B $(FUZZ_BUILD) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 -DUNWEDGE_FUZZ=ON \
	  -DUNWEDGE_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined \
	  -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  $(if $(PREFIX_PATH),-DCMAKE_PREFIX_PATH=$(PREFIX_PATH)) $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_RUNS)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
