# syntax=docker/dockerfile:1
# The CPU worker image: ablate-worker on Debian's LibTorch and OpenBLAS, with
# the ablate CLI and the coordinator binary beside it.
#
#   docker build -f docker/worker-cpu.Dockerfile -t ablate-worker-cpu:0.1.0 .
#   docker run -d -e ABLATE_COORDINATOR=coord.example:50051 ablate-worker-cpu:0.1.0
#
# Configured by the ABLATE_* variables of scripts/worker-entrypoint.sh.

# Debian 12 as of 2025-12-29; pin a digest too with
#   --build-arg DEBIAN_IMAGE=debian:bookworm-20251229-slim@sha256:...
ARG DEBIAN_IMAGE=debian:bookworm-20251229-slim

FROM ${DEBIAN_IMAGE} AS build
# scripts/setup.sh's build packages, less the test and demo tools.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libtorch-dev libopenblas0-openmp \
        libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
        libsqlite3-dev libyaml-cpp-dev libssl-dev libboost-math-dev \
        libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev \
        libcurl4-openssl-dev libzip-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DABLATE_BUILD_TESTS=OFF \
    && cmake --build build -j"$(nproc)" \
    && docker/runtime-packages.sh build/bin/* > build/runtime-packages

FROM ${DEBIAN_IMAGE}
COPY --from=build /src/build/runtime-packages /tmp/runtime-packages
# libopenblas0-openmp: LibTorch's BLAS; without it Debian falls back to the
# reference BLAS, about 40x slower.
RUN apt-get update \
    && xargs -a /tmp/runtime-packages \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libopenblas0-openmp ca-certificates \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
    && useradd --system --uid 10001 --user-group --no-create-home ablate \
    && install -d -o ablate -g ablate /var/cache/ablate
COPY --from=build /src/build/bin/ /usr/local/bin/
COPY scripts/worker-entrypoint.sh /usr/local/bin/
USER 10001:10001
ENV ABLATE_DATA_DIR=/var/cache/ablate
# A worker serves nothing to probe: it retries the coordinator until it
# answers and exits non-zero only on errors a restart policy should see.
HEALTHCHECK NONE
ENTRYPOINT ["worker-entrypoint.sh"]
