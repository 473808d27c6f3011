"""The variables each deployment sets against those each service's code reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import compose, rust_env
from .k8s import SERVICES, Problems, pod_spec

# Crates linked into every service binary besides its own.
SHARED_CRATES = ("api", "platform", "contracts")


@dataclass
class ServiceEnv:
    service: str
    reads: rust_env.ScanResult
    set_by: dict[str, set[str]] = field(default_factory=dict)  # "k8s" / "compose" → names


def k8s_environment(docs: list[dict[str, Any]], deployment: str) -> set[str]:
    """Names a Deployment's container gets: `env` plus every key of its `envFrom` sources."""
    by_kind_name = {(d.get("kind"), d["metadata"]["name"]): d for d in docs if d.get("metadata")}
    doc = by_kind_name.get(("Deployment", deployment))
    if doc is None:
        return set()
    names: set[str] = set()
    for container in pod_spec(doc)["containers"]:
        names |= {e["name"] for e in container.get("env") or []}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                cm = by_kind_name.get(("ConfigMap", source["configMapRef"]["name"])) or {}
                names |= {prefix + k for k in cm.get("data") or {}}
            if "secretRef" in source:
                secret = by_kind_name.get(("Secret", source["secretRef"]["name"])) or {}
                names |= {prefix + k for k in (secret.get("stringData") or {}) | (secret.get("data") or {})}
    return names


def collect(root: Path, docs: list[dict[str, Any]], compose_doc: dict[str, Any]) -> list[ServiceEnv]:
    result = []
    for service in SERVICES:
        reads = rust_env.scan([root / service] + [root / c for c in SHARED_CRATES])
        env = ServiceEnv(service, reads)
        env.set_by["k8s"] = k8s_environment(docs, service)
        env.set_by["compose"] = set(compose.environment((compose_doc.get("services") or {}).get(service) or {}))
        result.append(env)
    return result


def check(envs: list[ServiceEnv], must_set: set[str]) -> tuple[Problems, list[str]]:
    """Errors: a variable set that the service never reads; a loopback-defaulted one not set.

    Returns the problems and informational lines (read but left to the code's default).
    """
    problems, notes = Problems(), []
    for env in envs:
        read = env.reads.names()
        if not read:
            problems.add(f"{env.service}: no environment variable read at all: the source scan found nothing")
        for source, names in env.set_by.items():
            if not names:
                problems.add(f"{env.service}: {source} sets no variable (is the service defined there?)")
                continue
            for name in sorted(names - read):
                problems.add(f"{env.service}: {source} sets {name}, which {env.service} never reads")
            for name in sorted((read & must_set) - names):
                problems.add(f"{env.service}: {source} leaves {name} unset; its default points at this machine")
            defaulted = {r.name for r in env.reads.reads if r.defaulted}
            unset = sorted(read - names)
            if unset:
                notes.append(f"{env.service} ({source}) leaves to the code: " + ", ".join(
                    f"{n}{'' if n in defaulted else ' (optional)'}" for n in unset))
    return problems, notes


def table(envs: list[ServiceEnv]) -> list[str]:
    """A Markdown table of the variables per service: where each is set."""
    lines = ["| service | variable | read with default | k8s | compose |", "|---|---|---|---|---|"]
    for env in envs:
        defaulted = {r.name for r in env.reads.reads if r.defaulted}
        for name in sorted(env.reads.names()):
            lines.append(
                f"| {env.service} | {name} | {'yes' if name in defaulted else 'no'} | "
                f"{'set' if name in env.set_by['k8s'] else '-'} | {'set' if name in env.set_by['compose'] else '-'} |"
            )
    return lines
