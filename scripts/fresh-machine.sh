#!/usr/bin/env bash
# Proof that the README's two commands work on a fresh machine (run on demand, as root, ~40 min on
# 2 cores): starts a container from a minimal Debian with only the Rust toolchain, a C compiler,
# make, pkg-config, python3, git and curl (scripts/fresh-machine/Containerfile), clones this
# repository into it, and there
#   1. runs `cargo run --release` and the curl quick start against it (one MP3 downloaded, one .eml);
#   2. runs `scripts/test.sh`, which must install what it lacks (Chromium, Node.js, nextest, …) and pass.
# The container shares the host's network, as a fresh machine of this kind has MariaDB and RabbitMQ
# running on 127.0.0.1 (the tests create their own databases and queues there). Nothing else of the
# host is touched: the clone and every build stay in the container, which is removed at the end.
# The committed HEAD is what is tested (uncommitted changes are not). Logs go to target/fresh-machine.
#
#   scripts/fresh-machine.sh            # both steps
#   KEEP=1 scripts/fresh-machine.sh     # keep the container for a look inside
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

deploy/base-images.sh
# shellcheck source=deploy/podman-env.sh
. deploy/podman-env.sh

RUST_IMAGE=$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile | head -n1)
IMAGE=localhost/mp3converter/fresh-machine:latest
OUT="$ROOT/target/fresh-machine"
rm -rf "$OUT"
mkdir -p "$OUT"

start=$SECONDS
pm build --quiet --build-arg RUST_IMAGE="$RUST_IMAGE" -t "$IMAGE" scripts/fresh-machine >/dev/null
echo "fresh-machine: image $IMAGE ready in $((SECONDS - start)) s"

name=mp3converter-fresh-machine
pm rm -f "$name" >/dev/null 2>&1 || true
cleanup() { [ -n "${KEEP:-}" ] || pm rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# The repository is mounted read-only and cloned inside; HTTPS to the crate and Python registries
# verifies with the machine's CA bundle, mounted (never copied).
start=$SECONDS
status=0
pm run --name "$name" --network host \
  -v "$ROOT:/src:ro" -v "$OUT:/out" "${CA_MOUNT[@]}" \
  -v "$ROOT/scripts/fresh-machine/inside.sh:/inside.sh:ro" \
  "$IMAGE" bash /inside.sh || status=$?

echo
echo "Fresh machine ($(date -u +%Y-%m-%d), $(nproc) cores), total $((SECONDS - start)) s:"
cat "$OUT/results.txt" 2>/dev/null || true
echo "logs: $OUT"
exit $status
