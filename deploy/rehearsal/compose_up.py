"""Starts the containers `podman-compose up --no-start` created, honouring depends_on conditions,
and waits for every healthcheck: the part of `docker compose up --wait` that podman-compose cannot
do with Debian's podman 4.3 (it ignores `service_healthy` below podman 4.6, and without systemd
podman runs no healthcheck by itself: they are run here with `podman healthcheck run`).

    python compose_up.py COMPOSE_FILE PROJECT TIMEOUT_SECONDS [SERVICE,SERVICE,...]

Prints one line per service as it becomes started / healthy, then a JSON summary line
(`{"healthy_after": seconds, "services": {...}}`); exits 1 if a service did not get there in time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, check=check)


def containers(project: str) -> dict[str, str]:
    out = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}", "--format", "json").stdout
    result = {}
    for container in json.loads(out or "[]"):
        service = (container.get("Labels") or {}).get("com.docker.compose.service")
        if service:
            result[service] = container["Names"][0]
    return result


def running(name: str) -> bool:
    return podman("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


def healthy(name: str) -> bool:
    return podman("healthcheck", "run", name, check=False).returncode == 0


def main() -> int:
    compose_file, project, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    services = yaml.safe_load(open(compose_file, encoding="utf-8"))["services"]
    if len(sys.argv) > 4:
        services = {name: services[name] for name in sys.argv[4].split(",")}
    names = containers(project)
    missing = set(services) - set(names)
    if missing:
        print(f"compose_up: no container for {sorted(missing)}", file=sys.stderr)
        return 1
    start = time.monotonic()
    started: dict[str, float] = {}
    ready: dict[str, float] = {}  # healthy, or started when the service has no healthcheck

    def condition_met(dependency: str, condition: str) -> bool:
        if condition == "service_healthy":
            return dependency in ready
        return dependency in started

    while len(ready) < len(services):
        if time.monotonic() - start > timeout:
            waiting = sorted(set(services) - set(ready))
            print(f"compose_up: not healthy after {timeout:.0f} s: {', '.join(waiting)}", file=sys.stderr)
            print(json.dumps({"healthy_after": None, "waiting": waiting, "started": started, "ready": ready}))
            return 1
        for service, spec in services.items():
            deps = spec.get("depends_on") or {}
            if isinstance(deps, list):
                deps = {d: {"condition": "service_started"} for d in deps}
            if service not in started and all(
                condition_met(d, (c or {}).get("condition", "service_started")) for d, c in deps.items()
            ):
                podman("start", names[service])
                started[service] = round(time.monotonic() - start, 1)
                print(f"  {time.monotonic() - start:6.1f} s  started {service}", flush=True)
            if service in started and service not in ready:
                if "healthcheck" not in spec:
                    if running(names[service]):
                        ready[service] = started[service]
                        print(f"  {time.monotonic() - start:6.1f} s  {service} running (no healthcheck)", flush=True)
                elif healthy(names[service]):
                    ready[service] = round(time.monotonic() - start, 1)
                    print(f"  {time.monotonic() - start:6.1f} s  {service} healthy", flush=True)
        time.sleep(1)
    print(json.dumps({"healthy_after": round(time.monotonic() - start, 1), "started": started, "ready": ready}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
