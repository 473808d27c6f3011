#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (scripts/prerequisites.sh),
# starts the services they talk to (scripts/test-env.sh) and runs every test of the workspace
# against those real services. Extra arguments go to cargo nextest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/prerequisites.sh
source scripts/test-env.sh
trap test_env_cleanup EXIT
# `-p CRATE` narrows the run to one crate; without it every crate of the workspace is tested.
scope=(--workspace)
for arg in "$@"; do case "$arg" in -p|--package|-p*|--package=*) scope=() ;; esac; done
status=0
# The deployment files (Dockerfile, compose, k8s) are validated offline with the whole workspace.
if [ ${#scope[@]} -gt 0 ]; then
  deploy/validate.sh || status=$?
  # No two modules of a crate import each other (the layering ARCHITECTURE.md describes).
  python3 scripts/module-cycles.py || status=$?
  # Every dependency's licence is one deny.toml allows. Offline (no advisory database); the crates'
  # manifests it reads are fetched first, for a machine that has not downloaded them yet.
  { cargo fetch --locked --quiet && cargo deny --offline check licenses; } || status=$?
fi
cargo nextest run "${scope[@]}" --no-fail-fast "$@" || status=$?
exit $status
