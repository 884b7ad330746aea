# unwedge: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= 2
PREFIX_PATH ?=
CMAKE_ARGS ?=
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR ?= $(HOME)/.cache/ccache

DEB_PACKAGES := build-essential cmake ccache libtorch-dev libopenblas-dev libcli11-dev \
  nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libstb-dev libpng-dev gemmi-dev \
  libgloo-dev libgtest-dev libbenchmark-dev pybind11-dev python3-mrcfile python3-numpy python3-skimage \
  chromium

.PHONY: all deps build test demo bench clean

all: build

deps:
	@bash scripts/install-deps.sh $(DEB_PACKAGES)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release \
	  $(if $(PREFIX_PATH),-DCMAKE_PREFIX_PATH=$(PREFIX_PATH)) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)/unwedge

bench: build
	bash scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD)
