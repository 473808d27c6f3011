"""What must agree across files for the system to start: references, credentials, ports, hosts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from . import compose
from .k8s import Problems, containers, pod_spec, workloads

MARKER = "EXAMPLE ONLY — replace before any real use"


def _objects(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d.get("metadata")}


def secret_data(doc: dict[str, Any]) -> dict[str, str]:
    import base64  # noqa: PLC0415

    data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    return data | {k: str(v) for k, v in (doc.get("stringData") or {}).items()}


def container_env(docs: list[dict[str, Any]], workload: str) -> dict[str, str]:
    """A workload's environment with ConfigMap and Secret references resolved."""
    objects = _objects(docs)
    doc = next(d for d in workloads(docs) if d["metadata"]["name"] == workload)
    env: dict[str, str] = {}
    for c in pod_spec(doc)["containers"]:
        for source in c.get("envFrom") or []:
            if "configMapRef" in source:
                env |= (objects.get(("ConfigMap", source["configMapRef"]["name"])) or {}).get("data") or {}
            if "secretRef" in source:
                env |= secret_data(objects.get(("Secret", source["secretRef"]["name"])) or {})
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
            ref = (e.get("valueFrom") or {})
            if "secretKeyRef" in ref:
                secret = objects.get(("Secret", ref["secretKeyRef"]["name"])) or {}
                env[e["name"]] = secret_data(secret).get(ref["secretKeyRef"]["key"], "")
            if "configMapKeyRef" in ref:
                cm = objects.get(("ConfigMap", ref["configMapKeyRef"]["name"])) or {}
                env[e["name"]] = (cm.get("data") or {}).get(ref["configMapKeyRef"]["key"], "")
    return env


def check_references(docs: list[dict[str, Any]]) -> Problems:
    """Every Secret/ConfigMap a pod needs exists with the keys it needs (else: CreateContainerConfigError)."""
    problems = Problems()
    objects = _objects(docs)
    for doc in workloads(docs):
        spec = pod_spec(doc)
        where = f"{doc['kind']}/{doc['metadata']['name']}"

        def need(kind: str, name: str, key: str | None = None) -> None:
            obj = objects.get((kind, name))
            if obj is None:
                problems.add(f"{where} refers to missing {kind}/{name}")
            elif key is not None:
                keys = secret_data(obj) if kind == "Secret" else (obj.get("data") or {})
                if key not in keys:
                    problems.add(f"{where} refers to missing key {key} of {kind}/{name}")

        for c in containers(spec):
            for source in c.get("envFrom") or []:
                if "configMapRef" in source:
                    need("ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    need("Secret", source["secretRef"]["name"])
            for e in c.get("env") or []:
                ref = e.get("valueFrom") or {}
                if "secretKeyRef" in ref:
                    need("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                if "configMapKeyRef" in ref:
                    need("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
            mounted = {m["name"] for m in c.get("volumeMounts") or []}
            declared = {v["name"] for v in spec.get("volumes") or []} | {
                t["metadata"]["name"] for t in (doc["spec"].get("volumeClaimTemplates") or [])}
            for name in sorted(mounted - declared):
                problems.add(f"{where} container {c['name']} mounts undeclared volume {name}")
        for v in spec.get("volumes") or []:
            if "secret" in v:
                for item in v["secret"].get("items") or [{"key": None}]:
                    need("Secret", v["secret"]["secretName"], item["key"])
            if "configMap" in v:
                need("ConfigMap", v["configMap"]["name"])
    for doc in docs:
        if doc.get("kind") == "Service":
            selector = doc["spec"].get("selector") or {}
            targets = [w for w in workloads(docs) if all(
                (w["spec"]["template"]["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
            if not targets:
                problems.add(f"Service/{doc['metadata']['name']} selects no workload")
            for port in doc["spec"].get("ports") or []:
                target = port.get("targetPort", port["port"])
                known = {p.get("name") for w in targets for c in containers(pod_spec(w)) for p in c.get("ports") or []} | {
                    p["containerPort"] for w in targets for c in containers(pod_spec(w)) for p in c.get("ports") or []}
                if target not in known:
                    problems.add(f"Service/{doc['metadata']['name']} targets port {target}, which its pods do not declare")
        if doc.get("kind") in ("Ingress",):
            for rule in doc["spec"].get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    backend = path["backend"]["service"]
                    service = objects.get(("Service", backend["name"]))
                    if service is None:
                        problems.add(f"Ingress/{doc['metadata']['name']} routes to missing Service/{backend['name']}")
                    elif backend["port"].get("name") not in {p.get("name") for p in service["spec"]["ports"]} and \
                            backend["port"].get("number") not in {p["port"] for p in service["spec"]["ports"]}:
                        problems.add(f"Ingress/{doc['metadata']['name']} routes to an unknown port of {backend['name']}")
        if doc.get("kind") in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            if doc["kind"] == "HorizontalPodAutoscaler":
                ref = doc["spec"]["scaleTargetRef"]
                if (ref["kind"], ref["name"]) not in objects:
                    problems.add(f"HorizontalPodAutoscaler/{doc['metadata']['name']} scales missing {ref['kind']}/{ref['name']}")
            else:
                sel = doc["spec"]["selector"].get("matchLabels") or {}
                if not any(all((w["spec"]["template"]["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())
                           for w in workloads(docs)):
                    problems.add(f"PodDisruptionBudget/{doc['metadata']['name']} selects no workload")
    return problems


def _addr_port(addr: str) -> int | None:
    m = re.search(r":(\d+)$", addr or "")
    return int(m.group(1)) if m else None


def check_k8s_wiring(docs: list[dict[str, Any]]) -> Problems:
    """The URLs the services connect with match the servers' credentials, Services and ports."""
    problems = Problems()
    objects = _objects(docs)
    services = {name: doc for (kind, name), doc in objects.items() if kind == "Service"}

    def service_port(url: str, user: str, expected_service: str, default_port: int) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or default_port
        if host != expected_service:
            problems.add(f"{user}: {parts.scheme} URL points at {host!r}, not the Service {expected_service!r}")
            return
        service = services.get(host)
        if service is None or port not in {p["port"] for p in service["spec"]["ports"]}:
            problems.add(f"{user}: no Service {host} with port {port}")

    mysql = container_env(docs, "mysql")
    mysql_secret = secret_data(objects[("Secret", "mysql-credentials")])
    mongo_secret = secret_data(objects[("Secret", "mongodb-credentials")])
    rabbit_conf = dict(
        (k.strip(), v.strip()) for k, _, v in (
            line.partition("=") for line in secret_data(objects[("Secret", "rabbitmq-credentials")])
            .get("credentials.conf", "").splitlines() if "=" in line and not line.lstrip().startswith("#")))

    auth = container_env(docs, "auth")
    db = urlsplit(auth.get("DATABASE_URL", ""))
    if (db.username, unquote(db.password or ""), db.path.lstrip("/")) != (
            mysql.get("MYSQL_USER"), mysql_secret.get("MYSQL_PASSWORD"), mysql.get("MYSQL_DATABASE")):
        problems.add("auth: DATABASE_URL's user, password or database differs from the mysql StatefulSet's")
    service_port(auth.get("DATABASE_URL", ""), "auth", "mysql", 3306)

    for name in ("gateway", "converter", "notification"):
        env = container_env(docs, name)
        mongo = urlsplit(env.get("MONGODB_URI", ""))
        if (mongo.username, unquote(mongo.password or "")) != (
                mongo_secret.get("MONGO_INITDB_ROOT_USERNAME"), mongo_secret.get("MONGO_INITDB_ROOT_PASSWORD")):
            problems.add(f"{name}: MONGODB_URI's credentials differ from mongodb-credentials")
        service_port(env.get("MONGODB_URI", ""), name, "mongodb", 27017)
        amqp = urlsplit(env.get("AMQP_URL", ""))
        if (amqp.username, unquote(amqp.password or "")) != (rabbit_conf.get("default_user"), rabbit_conf.get("default_pass")):
            problems.add(f"{name}: AMQP_URL's credentials differ from rabbitmq-credentials' credentials.conf")
        service_port(env.get("AMQP_URL", ""), name, "rabbitmq", 5672)
    gateway = container_env(docs, "gateway")
    service_port(gateway.get("AUTH_GRPC_URL", ""), "gateway", "auth", 50051)
    notification = container_env(docs, "notification")
    service_port(notification.get("SMTP_URL", ""), "notification", "mailhog", 25)

    hosts = {rule.get("host") for d in docs if d.get("kind") == "Ingress" for rule in d["spec"].get("rules") or []}
    for name in ("gateway", "notification"):
        public = urlsplit(container_env(docs, name).get("PUBLIC_BASE_URL", ""))
        if public.hostname != "mp3converter.com" or "mp3converter.com" not in hosts:
            problems.add(f"{name}: PUBLIC_BASE_URL {public.geturl()!r} is not the gateway's Ingress host")

    for name in ("auth", "gateway", "converter", "notification"):
        env = container_env(docs, name)
        doc = next(d for d in workloads(docs) if d["metadata"]["name"] == name)
        ports = {p["name"]: p["containerPort"] for p in pod_spec(doc)["containers"][0].get("ports") or []}
        if _addr_port(env.get("HTTP_ADDR", "")) != ports.get("http"):
            problems.add(f"{name}: HTTP_ADDR {env.get('HTTP_ADDR')} is not the container's http port {ports.get('http')}")
        if name == "gateway" and _addr_port(env.get("ADMIN_ADDR", "")) != ports.get("admin"):
            problems.add(f"gateway: ADMIN_ADDR {env.get('ADMIN_ADDR')} is not the container's admin port {ports.get('admin')}")
        if name == "auth" and _addr_port(env.get("GRPC_ADDR", "")) != ports.get("grpc"):
            problems.add(f"auth: GRPC_ADDR {env.get('GRPC_ADDR')} is not the container's grpc port {ports.get('grpc')}")
    return problems


def check_compose_wiring(doc: dict[str, Any]) -> Problems:
    problems = Problems()
    services = doc.get("services") or {}
    env = {name: compose.environment(s) for name, s in services.items()}
    mysql, mongo, rabbit = env.get("mysql", {}), env.get("mongodb", {}), env.get("rabbitmq", {})
    db = urlsplit(env.get("auth", {}).get("DATABASE_URL", ""))
    if (db.hostname, db.username, unquote(db.password or ""), db.path.lstrip("/")) != (
            "mysql", mysql.get("MYSQL_USER"), mysql.get("MYSQL_PASSWORD"), mysql.get("MYSQL_DATABASE")):
        problems.add("compose auth: DATABASE_URL does not match the mysql service's user, password and database")
    for name in ("gateway", "converter", "notification"):
        m = urlsplit(env.get(name, {}).get("MONGODB_URI", ""))
        if (m.hostname, m.username, unquote(m.password or "")) != (
                "mongodb", mongo.get("MONGO_INITDB_ROOT_USERNAME"), mongo.get("MONGO_INITDB_ROOT_PASSWORD")):
            problems.add(f"compose {name}: MONGODB_URI does not match the mongodb service's credentials")
        a = urlsplit(env.get(name, {}).get("AMQP_URL", ""))
        if (a.hostname, a.username, unquote(a.password or "")) != (
                "rabbitmq", rabbit.get("RABBITMQ_DEFAULT_USER"), rabbit.get("RABBITMQ_DEFAULT_PASS")):
            problems.add(f"compose {name}: AMQP_URL does not match the rabbitmq service's credentials")
    grpc = urlsplit(env.get("gateway", {}).get("AUTH_GRPC_URL", ""))
    if (grpc.hostname, grpc.port) != ("auth", _addr_port(env.get("auth", {}).get("GRPC_ADDR", ""))):
        problems.add("compose gateway: AUTH_GRPC_URL does not reach auth's GRPC_ADDR")
    smtp = urlsplit(env.get("notification", {}).get("SMTP_URL", ""))
    if (smtp.hostname, smtp.port) != ("mailhog", 1025):
        problems.add("compose notification: SMTP_URL should be smtp://mailhog:1025")
    return problems


def check_example_markers(paths: list[Path]) -> Problems:
    """Each example credential carries the marker on its line or the one above."""
    problems = Problems()
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.search(r"example-[\w-]*password", line) and MARKER not in line and (i == 0 or MARKER not in lines[i - 1]):
                problems.add(f"{path.name}:{i + 1}: example credential without `# {MARKER}`")
    return problems
