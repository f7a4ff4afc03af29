# syntax=docker/dockerfile:1
# The coordinator image: ablate-coordinator alone, without LibTorch.
#
#   docker build -f docker/coordinator.Dockerfile -t ablate-coordinator:0.1.0 .
#   docker run -d -p 50051:50051 -v ablate-db:/var/lib/ablate ablate-coordinator:0.1.0
#
# Configured by the ABLATE_* variables of scripts/coordinator-entrypoint.sh;
# the database and checkpoints live in the volume /var/lib/ablate.

# Debian 12 as of 2025-12-29; pin a digest too with
#   --build-arg DEBIAN_IMAGE=debian:bookworm-20251229-slim@sha256:...
ARG DEBIAN_IMAGE=debian:bookworm-20251229-slim

FROM ${DEBIAN_IMAGE} AS build
# The subset of scripts/setup.sh's packages the coordinator builds with.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
        libsqlite3-dev libyaml-cpp-dev libssl-dev libboost-math-dev \
        libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY common/ common/
COPY proto/ proto/
COPY store/ store/
COPY coordinator/ coordinator/
COPY docker/runtime-packages.sh docker/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
        -DABLATE_COORDINATOR_ONLY=ON -DABLATE_BUILD_TESTS=OFF \
    && cmake --build build -j"$(nproc)" --target ablate-coordinator \
    && docker/runtime-packages.sh build/bin/ablate-coordinator > build/runtime-packages

FROM ${DEBIAN_IMAGE}
COPY --from=build /src/build/runtime-packages /tmp/runtime-packages
RUN apt-get update \
    && xargs -a /tmp/runtime-packages \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
    && useradd --system --uid 10001 --user-group --no-create-home ablate \
    && install -d -o ablate -g ablate /var/lib/ablate
COPY --from=build /src/build/bin/ablate-coordinator /usr/local/bin/
COPY scripts/coordinator-entrypoint.sh /usr/local/bin/
USER 10001:10001
ENV ABLATE_DB=/var/lib/ablate/ablate.db \
    ABLATE_LISTEN=0.0.0.0:50051
VOLUME /var/lib/ablate
EXPOSE 50051
# Through the standard grpc.health.v1 service (exempt from the token).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["coordinator-entrypoint.sh", "health"]
ENTRYPOINT ["coordinator-entrypoint.sh"]
