"""Loading the Kubernetes manifests and checking what the schemas cannot see."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
NAMESPACE = "mp3converter"
# The four services: Deployments built from this repository's Dockerfile.
SERVICES = ("auth", "gateway", "converter", "notification")
# Pod Security Standards, "restricted": the volume types a pod may use.
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}


class Problems(list):
    """Problems found by one check: human-readable, one line each."""

    def add(self, message: str) -> None:
        self.append(message)


def key(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def load_listed(k8s_dir: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The kustomization's resource files and their documents, read directly."""
    kustomization = yaml.safe_load((k8s_dir / "kustomization.yaml").read_text(encoding="utf-8"))
    files = list(kustomization.get("resources") or [])
    docs = []
    for name in files:
        for doc in yaml.safe_load_all((k8s_dir / name).read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((name, doc))
    return files, docs


def render(k8s_dir: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize k8s/`, with kustomize's own Go code (the pykustomize wheel)."""
    import pykustomize  # noqa: PLC0415 - only in the validation virtualenv

    result = asyncio.run(pykustomize.build(str(k8s_dir.resolve())))
    return [doc for doc in yaml.safe_load_all(result.yaml) if doc is not None]


def check_kustomization(k8s_dir: Path) -> tuple[Problems, list[dict[str, Any]]]:
    problems = Problems()
    kustomization = yaml.safe_load((k8s_dir / "kustomization.yaml").read_text(encoding="utf-8"))
    allowed = {"apiVersion", "kind", "resources"}
    for field in set(kustomization) - allowed:
        problems.add(f"kustomization.yaml uses `{field}`: keep it a plain resource list so every "
                     "manifest is valid as written")
    files, listed = load_listed(k8s_dir)
    on_disk = sorted(p.name for p in k8s_dir.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in sorted(set(on_disk) - set(files)):
        problems.add(f"k8s/{name} is not listed in kustomization.yaml (kubectl apply -k would skip it)")
    rendered = render(k8s_dir)
    by_key = {key(d): d for d in rendered}
    listed_docs = {key(d): d for _, d in listed}
    if set(by_key) != set(listed_docs):
        problems.add(f"kustomize renders {sorted(set(by_key) ^ set(listed_docs))} differently from the files")
    for k, doc in listed_docs.items():
        if k in by_key and by_key[k] != doc:
            problems.add(f"kustomize changes {k} while rendering it")
    for k, doc in by_key.items():
        kind = doc.get("kind")
        ns = (doc.get("metadata") or {}).get("namespace")
        if kind != "Namespace" and ns != NAMESPACE:
            problems.add(f"{k} is in namespace {ns!r}, not {NAMESPACE!r}")
    return problems, rendered


def check_schemas(docs: list[dict[str, Any]], versions: list[str]) -> Problems:
    import kubernetes_validate  # noqa: PLC0415

    problems = Problems()
    for doc in docs:
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.add(f"{key(doc)} (Kubernetes {version}): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.add(f"{key(doc)} (Kubernetes {version}): {e.message}")
    return problems


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind not in WORKLOAD_KINDS:
        return None
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    if doc.get("kind") == "Pod":
        return doc["metadata"].get("labels") or {}
    return doc["spec"]["template"]["metadata"].get("labels") or {}


def pod_annotations(doc: dict[str, Any]) -> dict[str, str]:
    return doc["spec"]["template"]["metadata"].get("annotations") or {}


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d.get("kind") in WORKLOAD_KINDS)


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def http_port(container: dict[str, Any], port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def check_workloads(docs: list[dict[str, Any]]) -> Problems:
    """Restricted pod security, resources, probes and scrape annotations, per the deployment brief."""
    problems = Problems()
    for doc in workloads(docs):
        name = key(doc)
        spec = pod_spec(doc)
        psc = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            problems.add(f"{name}: automountServiceAccountToken must be false (no pod talks to the API)")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.add(f"{name}: {flag} is set")
        for volume in spec.get("volumes") or []:
            types = set(volume) - {"name"}
            if not types <= RESTRICTED_VOLUME_TYPES:
                problems.add(f"{name}: volume {volume['name']} is of type {sorted(types)}")
        for c in containers(spec):
            where = f"{name} container {c['name']}"
            sc = c.get("securityContext") or {}
            run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            run_as_user = sc.get("runAsUser", psc.get("runAsUser"))
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if run_as_non_root is not True:
                problems.add(f"{where}: runAsNonRoot is not true")
            if not isinstance(run_as_user, int) or run_as_user == 0:
                problems.add(f"{where}: needs a numeric non-zero runAsUser (images may name their user)")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.add(f"{where}: seccompProfile must be RuntimeDefault")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.add(f"{where}: allowPrivilegeEscalation must be false")
            if sc.get("privileged"):
                problems.add(f"{where}: privileged")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.add(f"{where}: readOnlyRootFilesystem must be true")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                problems.add(f"{where}: capabilities must drop ALL")
            if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
                problems.add(f"{where}: adds capabilities {caps.get('add')}")
            for p in c.get("ports") or []:
                if "hostPort" in p:
                    problems.add(f"{where}: hostPort {p['hostPort']}")
            resources = c.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(section) or {}):
                        problems.add(f"{where}: no {section}.{resource}")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.add(f"{where}: no {probe}")
        app = pod_labels(doc).get("app.kubernetes.io/name")
        if doc["kind"] == "Deployment" and app in SERVICES:
            problems.extend(check_service_pod(doc, spec))
    return problems


def check_service_pod(doc: dict[str, Any], spec: dict[str, Any]) -> Problems:
    """One of the four services: its probes, image and Prometheus annotations."""
    problems = Problems()
    name = doc["metadata"]["name"]
    (c,) = spec["containers"]
    expected_paths = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    ports = set()
    for probe, path in expected_paths.items():
        get = (c.get(probe) or {}).get("httpGet")
        if probe == "startupProbe" and probe not in c:
            continue
        if not get or get.get("path") != path:
            problems.add(f"Deployment/{name}: {probe} must GET {path}")
            continue
        ports.add(http_port(c, get.get("port")))
    if name == "gateway" and http_port(c, "http") in ports:
        problems.add("Deployment/gateway: probes must use the internal admin port, not the public http one")
    if c.get("image") != f"mp3converter/{name}:latest" or c.get("imagePullPolicy") != "IfNotPresent":
        problems.add(f"Deployment/{name}: image must be mp3converter/{name}:latest, IfNotPresent")
    annotations = pod_annotations(doc)
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/path") != "/metrics":
        problems.add(f"Deployment/{name}: prometheus.io/scrape \"true\" and path /metrics expected")
    scrape_port = annotations.get("prometheus.io/port")
    if len(ports) != 1 or scrape_port != str(next(iter(ports))):
        problems.add(f"Deployment/{name}: prometheus.io/port {scrape_port} is not the probes' port {ports}")
    return problems


def check_skips(docs: list[dict[str, Any]]) -> tuple[Problems, list[tuple[str, str, str]]]:
    """Every checkov skip annotation carries a reason; returns (problems, [(resource, check, reason)])."""
    problems = Problems()
    skips = []
    for doc in docs:
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        for sub in [annotations] + ([pod_annotations(doc)] if doc.get("kind") in WORKLOAD_KINDS - {"Pod"} else []):
            for k, v in sub.items():
                if not k.startswith("checkov.io/skip"):
                    continue
                check, _, reason = str(v).partition("=")
                if len(reason.strip()) < 15:
                    problems.add(f"{key(doc)}: skip of {check} has no reason (`{k}: {check}=<why>`)")
                skips.append((key(doc), check, reason.strip()))
    return problems, skips


ALLOWED_INGRESS_BACKENDS = {"gateway", "mailhog", "rabbitmq-management"}


def check_exposure(docs: list[dict[str, Any]]) -> Problems:
    """Only the gateway (and the two dashboards) are reachable from outside the cluster."""
    problems = Problems()
    for doc in docs:
        if doc.get("kind") == "Service":
            kind = (doc.get("spec") or {}).get("type", "ClusterIP")
            if kind not in ("ClusterIP",):
                problems.add(f"{key(doc)} is of type {kind}: only the Ingress may expose services")
            if (doc.get("spec") or {}).get("externalIPs"):
                problems.add(f"{key(doc)} has externalIPs")
        if doc.get("kind") == "Ingress":
            for rule in doc["spec"].get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    backend = path["backend"].get("service", {}).get("name")
                    if backend not in ALLOWED_INGRESS_BACKENDS:
                        problems.add(f"{key(doc)} routes {rule.get('host')} to {backend}")
            if doc["spec"].get("defaultBackend"):
                problems.add(f"{key(doc)} has a defaultBackend")
    hosts = {
        rule.get("host"): path["backend"]["service"]["name"]
        for doc in docs if doc.get("kind") == "Ingress"
        for rule in doc["spec"].get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
    }
    expected = {"mp3converter.com": "gateway", "rabbitmq-manager.com": "rabbitmq-management", "mailhog.com": "mailhog"}
    if hosts != expected:
        problems.add(f"Ingress hosts {hosts}, expected {expected}")
    gateway_ingress = [d for d in docs if d.get("kind") == "Ingress" and any(
        r.get("host") == "mp3converter.com" for r in d["spec"].get("rules") or [])]
    for doc in gateway_ingress:
        a = doc["metadata"].get("annotations") or {}
        if a.get("nginx.ingress.kubernetes.io/proxy-body-size") not in ("0", "2g", "2G", "2049m"):
            problems.add(f"{key(doc)}: proxy-body-size must allow 2 GiB uploads")
        if a.get("nginx.ingress.kubernetes.io/proxy-request-buffering") != "off":
            problems.add(f"{key(doc)}: proxy-request-buffering must be off (uploads stream)")
        for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
            if int(a.get(f"nginx.ingress.kubernetes.io/{timeout}", "60")) < 600:
                problems.add(f"{key(doc)}: {timeout} is too short for large uploads")
    return problems
