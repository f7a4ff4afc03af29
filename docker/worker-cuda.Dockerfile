# syntax=docker/dockerfile:1
# The CUDA worker image: ablate-worker built against the official CUDA
# LibTorch, on Debian 12 with the same Debian libraries (gRPC, protobuf, ...)
# as the tested CPU build, and the ablate CLI beside it.
#
#   docker build -f docker/worker-cuda.Dockerfile -t ablate-worker-cuda:0.1.0 .
#   docker run -d --gpus all -e ABLATE_GPUS=all \
#     -e ABLATE_COORDINATOR=coord.example:50051 ablate-worker-cuda:0.1.0
#
# With ABLATE_GPUS=all it runs one worker per GPU it is given. The host needs
# the NVIDIA driver (>= 580 for CUDA 13.0) and the NVIDIA container toolkit,
# which mounts the driver's libcuda.so.1 into the container.
#
# LibTorch: the official cxx11-ABI zip, pinned by version: 2.11 with CUDA
# 13.0, what the GPU machines of ablate's own checks run. Its download
# addresses follow
#   https://download.pytorch.org/libtorch/cu<CUDA>/libtorch-cxx11-abi-shared-with-deps-<VER>%2Bcu<CUDA>.zip
# (from 2.7 on the zips are all cxx11-ABI and drop "cxx11-abi-" from the
# name). Move CUDA_PACKAGE_VERSION with it: the toolkit must match the
# LibTorch's CUDA. The pre-cxx11-ABI zips, and pip wheels of torch < 2.7,
# cannot link with Debian's gRPC and protobuf (std::string ABI).

# Debian 12 as of 2025-12-29; pin a digest too with
#   --build-arg DEBIAN_IMAGE=debian:bookworm-20251229-slim@sha256:...
ARG DEBIAN_IMAGE=debian:bookworm-20251229-slim
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-2.11.0%2Bcu130.zip
# Optional: the zip's sha256, checked when given.
ARG LIBTORCH_SHA256=
# NVIDIA's Debian 12 CUDA repository names the toolkit cuda-toolkit-13-0.
ARG CUDA_PACKAGE_VERSION=13-0
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64

FROM ${DEBIAN_IMAGE} AS build
ARG LIBTORCH_URL LIBTORCH_SHA256 CUDA_PACKAGE_VERSION CUDA_REPO
# LibTorch's CMake package looks for the CUDA toolkit (nvcc, headers,
# nvToolsExt): it comes from NVIDIA's repository for Debian 12, everything
# else from Debian.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl unzip \
    && curl -fsSL -o /opt/cuda-keyring.deb "${CUDA_REPO}/cuda-keyring_1.1-1_all.deb" \
    && dpkg -i /opt/cuda-keyring.deb \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "cuda-toolkit-${CUDA_PACKAGE_VERSION}" \
        build-essential cmake pkg-config \
        libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
        libsqlite3-dev libyaml-cpp-dev libssl-dev libboost-math-dev \
        libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev \
        libcurl4-openssl-dev libzip-dev \
    && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
    && if [ -n "${LIBTORCH_SHA256}" ]; then \
        echo "${LIBTORCH_SHA256}  /tmp/libtorch.zip" | sha256sum -c -; fi \
    && unzip -q /tmp/libtorch.zip -d /opt \
    && rm /tmp/libtorch.zip
ENV PATH=/usr/local/cuda/bin:${PATH}
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DABLATE_BUILD_TESTS=OFF \
        -DCMAKE_PREFIX_PATH=/opt/libtorch -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
        -DABLATE_CUDA=ON \
    && cmake --build build -j"$(nproc)" \
    && docker/runtime-packages.sh --bundled /opt/libtorch/lib --ignore '^libcuda\.so' \
        build/bin/* > build/runtime-packages \
    && rm -f /opt/libtorch/lib/*.a

FROM ${DEBIAN_IMAGE}
# The CUDA runtime libraries the build linked come from NVIDIA's repository
# too: the same keyring package as the build stage.
COPY --from=build /opt/cuda-keyring.deb /src/build/runtime-packages /tmp/
RUN dpkg -i /tmp/cuda-keyring.deb \
    && apt-get update \
    && xargs -a /tmp/runtime-packages \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages /tmp/cuda-keyring.deb \
    && useradd --system --uid 10001 --user-group --no-create-home ablate \
    && install -d -o ablate -g ablate /var/cache/ablate
# LibTorch's shared libraries, with the CUDA, cuDNN and NCCL builds it ships.
COPY --from=build /opt/libtorch/lib/ /opt/libtorch/lib/
RUN echo /opt/libtorch/lib > /etc/ld.so.conf.d/libtorch.conf && ldconfig
COPY --from=build /src/build/bin/ /usr/local/bin/
COPY scripts/worker-entrypoint.sh /usr/local/bin/
USER 10001:10001
# What the NVIDIA container toolkit reads: expose the GPUs and the driver's
# compute libraries.
ENV ABLATE_DATA_DIR=/var/cache/ablate \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# A worker serves nothing to probe: it retries the coordinator until it
# answers and exits non-zero only on errors a restart policy should see.
HEALTHCHECK NONE
ENTRYPOINT ["worker-entrypoint.sh"]
