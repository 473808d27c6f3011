"""docker-compose.yml: the compose-spec schema, then what makes `docker compose up` work."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .k8s import SERVICES, Problems

BACKING = {"mysql": "mysql:8", "mongodb": "mongo:7", "rabbitmq": "rabbitmq:3", "mailhog": "mailhog/mailhog"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def check_schema(doc: dict[str, Any], schema_path: Path) -> Problems:
    import jsonschema  # noqa: PLC0415

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    # The vendored schema names draft 2019-09 by a URI jsonschema does not know: say it here.
    validator = jsonschema.Draft201909Validator(schema)
    problems = Problems()
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.add(f"docker-compose.yml {path}: {error.message}")
    return problems


def healthcheck_port(service: dict[str, Any]) -> tuple[int | None, str | None]:
    test = (service.get("healthcheck") or {}).get("test") or []
    text = " ".join(test) if isinstance(test, list) else str(test)
    m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\S*)", text)
    return (int(m.group(1)), m.group(2).rstrip('"')) if m else (None, None)


def check_semantics(doc: dict[str, Any]) -> Problems:
    problems = Problems()
    services = doc.get("services") or {}
    for name, prefix in BACKING.items():
        image = (services.get(name) or {}).get("image", "")
        if not image.startswith(prefix):
            problems.add(f"compose service {name}: image {image!r}, expected {prefix}*")
    if "management" not in (services.get("rabbitmq") or {}).get("image", ""):
        problems.add("compose service rabbitmq: use the -management image (the dashboard)")
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency not in services:
                problems.add(f"compose service {name} depends on unknown {dependency}")
                continue
            wanted = (condition or {}).get("condition")
            if wanted == "service_healthy" and "healthcheck" not in services[dependency]:
                problems.add(f"compose service {name} waits for {dependency} to be healthy, which has no healthcheck")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/")) and source not in (doc.get("volumes") or {}):
                problems.add(f"compose service {name}: volume {source} is not declared")
    for name in SERVICES:
        service = services.get(name)
        if service is None:
            problems.add(f"compose service {name} is missing")
            continue
        build = service.get("build") or {}
        if build.get("target") != name or build.get("context") != ".":
            problems.add(f"compose service {name}: build the Dockerfile target {name} from .")
        if service.get("image") != f"mp3converter/{name}:latest":
            problems.add(f"compose service {name}: image should be mp3converter/{name}:latest")
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[:3] != ["CMD", f"/usr/local/bin/{name}", "healthcheck"]:
            problems.add(f"compose service {name}: healthcheck should run `/usr/local/bin/{name} healthcheck …` "
                         "(the image has no curl)")
        port, path = healthcheck_port(service)
        # The gateway's HTTP_ADDR is public and serves no health: its probes go to ADMIN_ADDR.
        variable = "ADMIN_ADDR" if name == "gateway" else "HTTP_ADDR"
        addr = environment(service).get(variable, "")
        if path != "/readyz" or port is None or not addr.endswith(f":{port}"):
            problems.add(f"compose service {name}: healthcheck must GET /readyz on {variable} ({addr}), "
                         f"not port {port} {path}")
        if name == "gateway" and addr and environment(service).get("HTTP_ADDR", "").endswith(f":{port}"):
            problems.add("compose service gateway: ADMIN_ADDR must not be the public HTTP_ADDR")
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency != "mailhog" and (condition or {}).get("condition") != "service_healthy":
                problems.add(f"compose service {name}: depends_on {dependency} should wait for service_healthy")
        if service.get("read_only") is not True or "ALL" not in (service.get("cap_drop") or []) \
                or "no-new-privileges:true" not in (service.get("security_opt") or []):
            problems.add(f"compose service {name}: read_only, cap_drop ALL and no-new-privileges expected")
        for published in service.get("ports") or []:
            if name != "gateway":
                problems.add(f"compose service {name} publishes {published}: only the gateway is public")
    gateway_ports = [str(p) for p in (services.get("gateway") or {}).get("ports") or []]
    if not any(p.split(":")[-2:] == ["8080", "8080"] for p in gateway_ports):
        problems.add("compose: the gateway must be published on 8080")
    mailhog_ports = [str(p) for p in (services.get("mailhog") or {}).get("ports") or []]
    if not any(p.endswith("8025:8025") for p in mailhog_ports):
        problems.add("compose: MailHog's UI must be published on 8025")
    public = environment(services.get("gateway") or {}).get("PUBLIC_BASE_URL", "")
    if urlsplit(public).port != 8080:
        problems.add(f"compose: the gateway's PUBLIC_BASE_URL {public!r} is not the published port 8080")
    return problems
