#!/usr/bin/env bash
# The test command: starts what the tests need (see scripts/test-env.sh) and runs every test of the
# workspace against those real services. Extra arguments go to cargo nextest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/test-env.sh
trap test_env_cleanup EXIT
cargo nextest run --workspace --no-fail-fast "$@"
