#!/usr/bin/env bash
# Offline validation of the deployment files (Dockerfile, docker-compose.yml, k8s/): no Docker
# engine or cluster needed. Prints one line per check and exits non-zero if any fails:
#   - kustomize renders k8s/ (kustomize's own Go library) exactly as the files are written;
#   - every manifest against the Kubernetes API schemas (strict), restricted pod security,
#     resources and probes, references, credentials and ports that must agree, exposure, and the
#     NetworkPolicies evaluated connection by connection;
#   - docker-compose.yml against the compose-spec schema, start order and wiring;
#   - the environment variables set for each service against those its Rust code reads;
#   - checkov on k8s/ and on the Dockerfile (every skip carries its reason);
#   - the validator's own tests (deploy/tests).
# The tools live in target/deploy-venv, installed from the pinned deploy/requirements*.txt and
# reinstalled only when those files (or the Python version) change.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
# No __pycache__ directories in the work tree.
export PYTHONDONTWRITEBYTECODE=1
VENV="$ROOT/target/deploy-venv"
STAMP="$VENV/.requirements.sha256"

wanted=$({ "$PYTHON" --version 2>&1; cat deploy/requirements.txt deploy/requirements-kustomize.txt; } | sha256sum | cut -d' ' -f1)

install_tools() {
  echo "deploy/validate: installing the validation tools into target/deploy-venv"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt
  # The kustomize wheel declares a newer Python than it needs (see requirements-kustomize.txt).
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --ignore-requires-python \
    -r deploy/requirements-kustomize.txt
  echo "$wanted" > "$STAMP"
}

mkdir -p "$ROOT/target"
# Two runs at once (e.g. parallel test scripts) must not build the virtualenv over each other.
exec 9> "$ROOT/target/deploy-venv.lock"
flock 9
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  install_tools
fi
flock -u 9

status=0
PYTHONPATH="$ROOT/deploy" "$VENV/bin/python" -m validation.main "$@" || status=1

echo "deploy/validate: the validator's own tests"
if ! PYTHONPATH="$ROOT/deploy" "$VENV/bin/python" -m pytest -q -p no:cacheprovider deploy/tests; then
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "deploy/validate: FAILED"
fi
exit "$status"
