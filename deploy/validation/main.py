"""Runs every deployment check and prints one summary line per check (deploy/validate.sh)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from . import compose, consistency, dockerfile, envcheck, k8s, netpol, rust_env

# Validated against both: the oldest Kubernetes these manifests support and a current one.
KUBERNETES_VERSIONS = ["1.30.0", "1.35.0"]

# checkov must not reach any server: no platform mappings, no version check, nothing downloaded.
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE", "LOG_LEVEL": "WARNING"}


class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def line(self, name: str, problems: list[str], summary: str = "") -> None:
        status = "ok  " if not problems else "FAIL"
        print(f"  {status} {name:<22} {summary}".rstrip(), flush=True)
        for problem in problems:
            print(f"         - {problem}", flush=True)
        if problems:
            self.failed.append(name)

    def run(self, name: str, check: Callable[[], tuple[list[str], str]]) -> None:
        try:
            problems, summary = check()
        except Exception as e:  # a crash of a check is a failure of that check, reported as such
            problems, summary = [f"the check crashed: {type(e).__name__}: {e}"], ""
        self.line(name, problems, summary)


def start_checkov(root: Path, framework: str, target: list[str]) -> subprocess.Popen[str]:
    checkov = Path(sys.executable).with_name("checkov")
    return subprocess.Popen(
        [str(checkov), *target, "--framework", framework, "--skip-download", "--output", "json"],
        cwd=root, env=os.environ | CHECKOV_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_checkov(process: subprocess.Popen[str], framework: str) -> tuple[list[str], str]:
    out, err = process.communicate(timeout=600)
    try:
        results = json.loads(out)
    except json.JSONDecodeError:
        return [f"checkov printed no report (exit {process.returncode}): {err.strip()[-500:]}"], ""
    results = results if isinstance(results, list) else [results]
    report = next((r for r in results if r.get("check_type") == framework), None)
    if report is None:
        return [f"checkov scanned nothing for {framework}"], ""
    summary = report["summary"]
    problems = [
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']}:{f['file_line_range'][0]})"
        for f in report["results"]["failed_checks"]
    ]
    if summary.get("parsing_errors"):
        problems.append(f"{summary['parsing_errors']} file(s) could not be parsed")
    if summary["passed"] == 0:
        problems.append("no check passed: nothing was scanned")
    skipped = report["results"]["skipped_checks"]
    ids = sorted({s["check_id"] for s in skipped})
    text = f"{summary['passed']} passed, {summary['failed']} failed, {len(skipped)} skipped"
    return problems, text + (f" ({', '.join(ids)})" if ids else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--env-table", action="store_true", help="print the variables per service (Markdown)")
    parser.add_argument("--skip-checkov", action="store_true")
    args = parser.parse_args(argv)
    root: Path = args.root
    k8s_dir = root / "k8s"
    report = Report()
    started = time.monotonic()

    checkov = {} if args.skip_checkov else {
        "kubernetes": start_checkov(root, "kubernetes", ["--directory", "k8s"]),
        "dockerfile": start_checkov(root, "dockerfile", ["--file", "Dockerfile"]),
    }

    docs: list[dict] = []

    def kustomize() -> tuple[list[str], str]:
        nonlocal docs
        problems, docs = k8s.check_kustomization(k8s_dir)
        return problems, f"{len(docs)} resources, identical to the files kustomization.yaml lists"

    report.run("kustomize render", kustomize)
    if not docs:  # without a render, fall back to the files themselves for the other checks
        docs = [d for _, d in k8s.load_listed(k8s_dir)[1]]
    report.run("kubernetes schemas", lambda: (
        k8s.check_schemas(docs, KUBERNETES_VERSIONS),
        f"{len(docs)} resources, strict, Kubernetes {' and '.join(v.rsplit('.', 1)[0] for v in KUBERNETES_VERSIONS)}"))
    workload_count = sum(1 for _ in k8s.workloads(docs))
    report.run("workload policies", lambda: (
        k8s.check_workloads(docs), f"{workload_count} workloads: restricted pod security, resources, probes"))
    report.run("references", lambda: (consistency.check_references(docs), "Secrets, ConfigMaps, Services, ports"))
    report.run("k8s wiring", lambda: (
        consistency.check_k8s_wiring(docs), "credentials, URLs, hosts and ports agree"))
    report.run("exposure", lambda: (
        k8s.check_exposure(docs), "ClusterIP only; Ingress → gateway, rabbitmq-management, mailhog"))
    report.run("network policies", lambda: netpol.check_network_policies(docs))

    def skips() -> tuple[list[str], str]:
        problems, found = k8s.check_skips(docs)
        return problems, f"{len(found)} checkov skips, each with a reason"

    report.run("skip reasons", skips)

    compose_doc = compose.load(root / "docker-compose.yml")
    report.run("compose schema", lambda: (
        compose.check_schema(compose_doc, root / "deploy" / "schemas" / "compose-spec.json"),
        f"compose-spec, {len(compose_doc.get('services') or {})} services"))
    report.run("compose semantics", lambda: (
        compose.check_semantics(compose_doc) + consistency.check_compose_wiring(compose_doc),
        "images, healthchecks, start order, credentials, ports"))
    report.run("example credentials", lambda: (
        consistency.check_example_markers([k8s_dir / "secrets.yaml", root / "docker-compose.yml"]),
        f"marked `{consistency.MARKER}`"))
    report.run("dockerfile targets", lambda: (dockerfile.check(root), "auth, gateway, converter, notification"))

    envs: list[envcheck.ServiceEnv] = []
    notes: list[str] = []

    def env_vars() -> tuple[list[str], str]:
        nonlocal envs, notes
        envs = envcheck.collect(root, docs, compose_doc)
        must_set = rust_env.loopback_defaults(root / "platform" / "src" / "config.rs")
        problems, notes = envcheck.check(envs, must_set)
        counted = sum(len(e.reads.names()) for e in envs)
        return problems, f"{counted} variables read by 4 services; k8s and compose set only those"

    report.run("environment variables", env_vars)
    for note in notes:  # read but not set: fine while the code's default suits a deployment
        print(f"         . {note}")

    for framework, process in checkov.items():
        report.run(f"checkov {framework}", lambda p=process, f=framework: finish_checkov(p, f))

    if args.env_table and envs:
        print()
        print("\n".join(envcheck.table(envs)))
    elapsed = time.monotonic() - started
    if report.failed:
        print(f"deploy/validate: {len(report.failed)} check(s) failed: {', '.join(report.failed)} ({elapsed:.1f} s)")
        return 1
    print(f"deploy/validate: all checks passed ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
