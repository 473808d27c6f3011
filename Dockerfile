# syntax=docker/dockerfile:1
#
# The four services of the workspace, one build target each:
#
#   docker build --target auth         -t mp3converter/auth:latest .
#   docker build --target gateway      -t mp3converter/gateway:latest .
#   docker build --target converter    -t mp3converter/converter:latest .
#   docker build --target notification -t mp3converter/notification:latest .
#
# Every stage up to `builder` is shared, so the first build compiles the whole workspace and the
# other three only copy their binary out of the cache. `deploy/build-images.sh` runs all four.
#
# Layer caching: `planner` reduces the workspace to a recipe of its manifests and Cargo.lock
# (cargo-chef), `builder` compiles the dependencies from that recipe alone, so editing a source
# file recompiles only the workspace crates.

# The base images are the only build arguments (defaults: the official images). Where no registry
# is reachable, deploy/base-images.sh makes local images under these same names.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- Toolchain and the C libraries the build links against -----------------------------------
# checkov:skip=CKV_DOCKER_7: the tag comes from the RUST_IMAGE build argument, pinned above (rust:1.95-slim-bookworm)
FROM ${RUST_IMAGE} AS chef
# make + gcc: mp3lame-sys compiles LAME from its bundled sources with autotools (Opus is decoded
# in Rust: no libopus). pkg-config: build scripts that look for system libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config make gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# ---- The dependency recipe: changes only when a manifest or Cargo.lock does ------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- Dependencies (a cached layer), then the four binaries ------------------------------------
FROM chef AS builder
# The same packages in both steps, so the dependencies are compiled with the same features once.
# Packages, not `--bin`: the workspace's default-members is the all-in-one, and `--bin` looks
# only there ("no bin target named `auth` in default-run packages").
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        -p auth -p gateway -p converter -p notification
COPY . .
RUN cargo build --release --locked -p auth -p gateway -p converter -p notification
# The converter links LAME statically under the GNU LGPL, whose texts go into its image (README.md,
# "Licences"): the bindings' LGPL-3.0 and LAME's own COPYING, from the one mp3lame-sys in Cargo.lock.
RUN mkdir -p /licenses/lame \
    && cp "$CARGO_HOME"/registry/src/*/mp3lame-sys-*/LICENSE /licenses/lame/LGPL-3.0 \
    && cp "$CARGO_HOME"/registry/src/*/mp3lame-sys-*/lame-*/COPYING /licenses/lame/COPYING

# ---- Runtime base shared by the four services ---------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: TLS to SMTP relays and databases outside the cluster; nothing else (Opus is
# decoded in Rust). No curl: the HEALTHCHECKs below and docker-compose.yml's run the service binary
# itself (`<service> healthcheck [/readyz]`, one GET to its own HTTP_ADDR, the gateway's ADMIN_ADDR,
# exit 0 or 1).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed, high, numeric UID: Kubernetes can verify runAsNonRoot against it and it collides with
# no user of the host.
RUN groupadd --system --gid 10001 mp3converter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mp3converter \
    && install -d -o 10001 -g 10001 -m 0700 /var/tmp/mp3converter
# /var/tmp/mp3converter is the converter's spill directory (CONVERTER_TEMP_DIR): created here so
# that a Docker volume mounted on it starts out owned by the service user.
USER 10001:10001
WORKDIR /nonexistent

# ---- One target per service ---------------------------------------------------------------------
FROM runtime AS auth
COPY --from=builder /src/target/release/auth /usr/local/bin/auth
# gRPC, then HTTP (/healthz, /readyz).
EXPOSE 50051 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["/usr/local/bin/auth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/auth"]

FROM runtime AS gateway
COPY --from=builder /src/target/release/gateway /usr/local/bin/gateway
# 8080: the public API; 8084: health, readiness and metrics (ADMIN_ADDR), never published.
EXPOSE 8080 8084
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS converter
COPY --from=builder /src/target/release/converter /usr/local/bin/converter
COPY --from=builder /licenses/lame /usr/share/doc/lame
EXPOSE 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/converter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/converter"]

FROM runtime AS notification
COPY --from=builder /src/target/release/notification /usr/local/bin/notification
EXPOSE 8083
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/notification", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/notification"]
