#!/usr/bin/env python3
"""Prints each crate's graph of module imports (`use crate::a` inside module b, and `super::`
siblings) and fails when two modules of one crate import each other, directly or in a ring.

    scripts/module-cycles.py            # every crate of the workspace
    scripts/module-cycles.py gateway    # one crate, with its edges
"""
import os, pathlib, re, sys

ROOT = pathlib.Path(os.environ.get("MODULE_ROOT") or pathlib.Path(__file__).resolve().parent.parent)
CRATES = ["api", "contracts", "platform", "auth", "gateway", "converter", "notification", "cli", "allinone"]
USE = re.compile(r"\b(crate|super)::([a-z_][a-z0-9_]*)")


def module_of(src: pathlib.Path, path: pathlib.Path) -> list[str]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def edges(crate: str) -> dict[str, set[str]]:
    src = ROOT / crate / "src"
    graph: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        module = module_of(src, path)
        text = path.read_text()
        # Test modules may reach anywhere; they are not part of the dependency structure.
        text = text.split("#[cfg(test)]")[0]
        # Doc links (`[`crate::x`]`) are not imports.
        text = "\n".join(line.split("//")[0] for line in text.splitlines())
        for kind, name in USE.findall(text):
            if kind == "crate":
                target = [name]
            else:
                parent = module[:-1] if path.stem not in ("mod",) else module[:-1]
                target = parent + [name]
            # Compare at the depth where the two modules part.
            common = 0
            while common < min(len(module), len(target)) and module[common] == target[common]:
                common += 1
            if common >= len(target) or common >= len(module):
                continue  # a parent importing its child, or the reverse: not a cycle
            a = "::".join(module[: common + 1])
            b = "::".join(target[: common + 1])
            if a != b:
                graph.setdefault(a, set()).add(b)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main() -> int:
    chosen = sys.argv[1:] or CRATES
    bad = 0
    for crate in chosen:
        graph = edges(crate)
        if len(chosen) == 1:
            for node in sorted(graph):
                print(f"{crate}::{node} -> {', '.join(sorted(graph[node]))}")
        found = cycles(graph)
        for ring in found:
            print(f"{crate}: import cycle: {' -> '.join(ring)}")
        bad += len(found)
        if not found:
            print(f"{crate}: {sum(len(v) for v in graph.values())} module imports, no cycle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
