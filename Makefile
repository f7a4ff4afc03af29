# The two commands a newcomer types (README): `make demo` and `make test`.
# Each does its own set-up: packages through scripts/setup.sh, then the build.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build test demo bench clean

all: build

setup:
	scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD)
