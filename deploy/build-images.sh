#!/usr/bin/env bash
# Builds the four service images (mp3converter/<service>:latest) from the Dockerfile's targets.
#
#   deploy/build-images.sh minikube   # into minikube's container runtime (minikube image build)
#   deploy/build-images.sh docker     # with the docker CLI, e.g. after `eval $(minikube docker-env)`
#
# The first build compiles the workspace (10-20 minutes on 4 CPUs); the other three reuse that
# stage from the build cache and take seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

mode=${1:-minikube}
for service in auth gateway converter notification; do
  echo "==> mp3converter/${service}:latest"
  case "$mode" in
    minikube) minikube image build -t "mp3converter/${service}:latest" --build-opt="target=${service}" . ;;
    docker) docker build --target "$service" -t "mp3converter/${service}:latest" . ;;
    *) echo "usage: $0 [minikube|docker]" >&2; exit 2 ;;
  esac
done
