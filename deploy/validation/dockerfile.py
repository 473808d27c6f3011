"""The Dockerfile builds the four services the manifests run, from a context holding their sources."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from .k8s import SERVICES, Problems


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), " ".join(rest.split())))
    return result


def check(root: Path) -> Problems:
    problems = Problems()
    steps = instructions((root / "Dockerfile").read_text(encoding="utf-8"))
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, args in steps:
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)$", args, re.IGNORECASE)
            current = m.group(1) if m else f"stage{len(stages)}"
            stages[current] = [(word, args)]
        elif current is not None:
            stages[current].append((word, args))
    # Expand ARG defaults (`ARG NAME="value"`, later used as ${NAME} or $NAME) inside RUN lines.
    values = {}
    for word, args in steps:
        m = re.match(r'^(\w+)=(?:"([^"]*)"|(\S*))$', args) if word == "ARG" else None
        if m:
            values[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)
    runs = [expand(args) for word, args in steps if word == "RUN"]
    builds = [args for args in runs if "cargo build" in args]
    cooks = [args for args in runs if "cargo chef cook" in args]
    def selection(text: str) -> list[str]:
        return sorted(re.findall(r"(--bin|-p|--package)[\s=]+(\S+)", text))
    if builds and cooks and selection(cooks[-1]) != selection(builds[-1]):
        problems.add("Dockerfile: cargo chef cook and cargo build select different packages or binaries "
                     "(the dependency layer would be compiled twice)")
    if not any("--release" in b and "--locked" in b for b in builds):
        problems.add("Dockerfile: no `cargo build --release --locked`")
    if not cooks:
        problems.add("Dockerfile: dependencies are not built in their own cached layer (cargo chef cook)")
    # Packages, not `--bin NAME`: with the all-in-one as the workspace's default-members, `--bin`
    # looks only there ("no bin target named `auth` in default-run packages").
    packages = lambda text: {m[1] for m in selection(text) if m[0] in ("-p", "--package")}  # noqa: E731
    for service in SERVICES:
        if not any(service in packages(b) for b in builds):
            problems.add(f"Dockerfile: cargo build does not build -p {service}")
        if cooks and service not in packages(cooks[-1]):
            problems.add(f"Dockerfile: cargo chef cook does not cook -p {service}")
        stage = stages.get(service)
        if stage is None:
            problems.add(f"Dockerfile: no target `{service}` (docker build --target {service})")
            continue
        if not any(w == "COPY" and f"target/release/{service} " in a + " " for w, a in stage):
            problems.add(f"Dockerfile target {service} does not copy the {service} binary")
        if not any(w == "ENTRYPOINT" and f"/{service}\"" in a for w, a in stage):
            problems.add(f"Dockerfile target {service}: ENTRYPOINT is not the {service} binary")
        # The binary answers its own health check: the image needs no curl.
        if not any(w == "HEALTHCHECK" and f'"/usr/local/bin/{service}", "healthcheck"' in a for w, a in stage):
            problems.add(f"Dockerfile target {service}: HEALTHCHECK should run `{service} healthcheck`")
        manifest = (root / service / "Cargo.toml").read_text(encoding="utf-8")
        has_bin = (root / service / "src" / "main.rs").exists() and (
            "[[bin]]" not in manifest or re.search(rf'name\s*=\s*"{service}"', manifest))
        if not has_bin:
            problems.add(f"crate {service} has no binary named {service}")
    runtime_user = [a for w, a in stages.get("runtime", []) if w == "USER"]
    if not runtime_user or not re.match(r"^[1-9]\d*(:\d+)?$", runtime_user[-1]):
        problems.add("Dockerfile: the runtime stage must switch to a numeric non-root USER")
    runtime_from = expand(stages.get("runtime", [("FROM", "")])[0][1])
    if "debian" not in runtime_from or "slim" not in runtime_from:
        problems.add(f"Dockerfile: the runtime base should be debian bookworm-slim, not {runtime_from}")
    text = " ".join(a for w, a in stages.get("runtime", []) if w == "RUN")
    for package in ("ca-certificates",):
        if package not in text:
            problems.add(f"Dockerfile: the runtime stage does not install {package}")
    text = " ".join(a for w, a in stages.get("chef", []) if w == "RUN")
    for package in ("make", "gcc"):
        if not re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", text):
            problems.add(f"Dockerfile: the build stage does not install {package}")

    patterns = [
        line.strip().rstrip("/").lstrip("/") for line in (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # cargo needs every workspace member in the context, not only the four services.
    manifest = (root / "Cargo.toml").read_text(encoding="utf-8")
    members_list = re.search(r"members\s*=\s*\[([^\]]*)\]", manifest)
    members = re.findall(r'"([^"]+)"', members_list.group(1)) if members_list else []
    needed = ["Cargo.toml", "Cargo.lock", "migrations", "proto", *members, *SERVICES]
    for path in needed:
        for pattern in patterns:
            if not pattern.startswith("!") and fnmatch.fnmatch(path, pattern):
                problems.add(f".dockerignore pattern {pattern!r} leaves {path} out of the build context")
    return problems
