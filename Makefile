# The two commands a newcomer types (README): `make demo` and `make test`.
# Each does its own set-up: packages through scripts/setup.sh, then the build.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build test demo bench fuzz clean

all: build

setup:
	scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Only the three binaries: a newcomer's first sweep should not wait for the tests.
demo: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS) --target ablate ablate-worker ablate-coordinator
	ABLATE_BIN_DIR=$(BUILD)/bin scripts/demo.sh

bench: build
	BUILD=$(BUILD) bench/run.sh

# Fuzzes the sweep spec reader with libFuzzer (clang, ASan, UBSan) for
# FUZZ_SECONDS; outside `make test`, whose only use of clang is the lock lint.
FUZZ_SECONDS ?= 300
fuzz:
	scripts/fuzz-spec.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
