"""The environment variables a service reads, found by scanning its Rust sources.

A name counts as read when it is a string literal `"[A-Z][A-Z0-9_]+"` passed as the first
argument of a reading function:

* `std::env::var`, `env::var`, `var_os` (the process environment itself);
* `platform::config`'s readers (`raw`, `optional`, `or_default`, `string_or`, `duration_or`,
  `duration_list_or`), however they are qualified;
* any function of the scanned code that passes its own `&str` parameter on to a reader (found to a
  fixed point, so wrappers of wrappers count), e.g. auth's `positive("LOGIN_MAX_...", 5)`;
* clap's `#[arg(env = "NAME")]`;
* `EnvFilter::from_default_env` / `try_from_default_env`, which read `RUST_LOG`.

Comments, `#[cfg(test)]` items and modules compiled only for tests (`#[cfg(test)]`,
`#[cfg(feature = "testing")]`) are left out, and so are `env!`/`option_env!` (compile time).
The scan is deliberately lexical: the services change daily and this must keep working without
a Rust parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Readers whose call site supplies the default used when the variable is unset.
DEFAULTED_READERS = {"or_default", "string_or", "duration_or", "duration_list_or"}
# Readers without a default at the call site: the code decides what "unset" means.
PLAIN_READERS = {"raw", "optional", "var", "var_os"}
NAME = r'"([A-Z][A-Z0-9_]+)"'


@dataclass
class Read:
    name: str
    defaulted: bool
    location: str


@dataclass
class ScanResult:
    reads: list[Read] = field(default_factory=list)

    def names(self) -> set[str]:
        return {r.name for r in self.reads}

    def without_default(self) -> set[str]:
        """Names that are read at least once without a default at the call site."""
        defaulted = {r.name for r in self.reads if r.defaulted}
        return {r.name for r in self.reads if not r.defaulted and r.name not in defaulted}


def _literal(text: str, open_len: int, close_len: int) -> str:
    """A string literal as the scan needs it: kept when it could be a variable's name, its
    contents blanked otherwise (so code quoted inside a string is never taken for a call)."""
    inner = text[open_len : len(text) - close_len]
    if re.fullmatch(r"[A-Z][A-Z0-9_]+", inner):
        return text
    return text[:open_len] + re.sub(r"[^\n]", "_", inner) + text[len(text) - close_len :]


def scannable(source: str, blank_strings: bool = True) -> str:
    """The source with comments blanked out, and string literals too unless they look like a
    variable's name (lines preserved, so line numbers stay right)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        nxt = source[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            end = source.find("\n", i)
            end = n if end == -1 else end
            i = end
        elif c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if source[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', source[i:]) and _starts_token(source, i):
            hashes = re.match(r"r(#*)\"", source[i:]).group(1)
            end = source.find('"' + hashes, i + 2 + len(hashes))
            end = n if end == -1 else end + 1 + len(hashes)
            literal = source[i:end]
            out.append(_literal(literal, 2 + len(hashes), 1 + len(hashes)) if blank_strings else literal)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            literal = source[i : j + 1]
            out.append(_literal(literal, 1, 1) if blank_strings else literal)
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}', '"') or a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", source[i:])
            if m:
                out.append(m.group(0))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _starts_token(source: str, i: int) -> bool:
    """Whether the `r` at `i` begins a raw string (`r"…"`, `br"…"`), not the end of an identifier."""
    before = source[i - 1] if i else ""
    if before == "b":
        before = source[i - 2] if i > 1 else ""
    return not (before.isalnum() or before == "_")


def _matching_brace(text: str, open_at: int) -> int:
    """Index just past the brace closing the one at `open_at` (string literals already kept)."""
    depth, i, n = 0, open_at, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


TEST_ONLY_CFG = re.compile(r'#\[cfg\(\s*(test|feature\s*=\s*"testing")\s*\)\]')


def strip_test_items(source: str) -> str:
    """Blanks items behind `#[cfg(test)]` / `#[cfg(feature = "testing")]` (a block or a `mod x;`)."""
    result = source
    for m in reversed(list(TEST_ONLY_CFG.finditer(source))):
        start = m.start()
        brace = result.find("{", m.end())
        semicolon = result.find(";", m.end())
        if semicolon != -1 and (brace == -1 or semicolon < brace):
            end = semicolon + 1
        elif brace != -1:
            end = _matching_brace(result, brace)
        else:
            continue
        blank = "".join("\n" if ch == "\n" else " " for ch in result[start:end])
        result = result[:start] + blank + result[end:]
    return result


def test_only_modules(source: str) -> set[str]:
    """Names of `mod x;` declarations compiled only for tests."""
    pattern = TEST_ONLY_CFG.pattern + r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;"
    return {m.group(2) for m in re.finditer(pattern, source)}


def rust_sources(crate: Path) -> list[Path]:
    """The crate's library and binary sources, without modules compiled only for tests."""
    src = crate / "src"
    excluded: set[Path] = set()
    files = sorted(src.rglob("*.rs"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        parent = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.with_suffix("")
        for module in test_only_modules(text):
            excluded.add(parent / f"{module}.rs")
            excluded.add(parent / module)
    return [
        p for p in files
        if p not in excluded and not any(ex in p.parents for ex in excluded)
    ]


def _reader_pattern(names: set[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    # `name(`, `config::name(`, `name::<T>(`; not `.name(` (a method) nor `fn name(`.
    return re.compile(rf"(?<![\w.])(?<!fn )(?:[\w:]*::)?({alternatives})\s*(?:::\s*<[^()]*>\s*)?\(")


WRAPPER = re.compile(r"\bfn\s+(\w+)\s*(?:<[^>]*>)?\s*\(\s*(\w+)\s*:\s*&\s*(?:'\w+\s+)?str\b")


def find_readers(sources: list[str]) -> dict[str, bool]:
    """Every function that reads the variable named by its first argument → whether it defaults."""
    readers = {name: False for name in PLAIN_READERS} | {name: True for name in DEFAULTED_READERS}
    while True:
        added = False
        pattern = _reader_pattern(set(readers))
        for text in sources:
            for m in WRAPPER.finditer(text):
                function, param = m.group(1), m.group(2)
                if function in readers:
                    continue
                body_start = text.find("{", m.end())
                declaration_end = text.find(";", text.find(")", m.end()))
                if body_start == -1 or (declaration_end != -1 and declaration_end < body_start):
                    continue  # a declaration without a body (in a trait or an extern block)
                body = text[body_start : _matching_brace(text, body_start)]
                for call in pattern.finditer(body):
                    if re.match(rf"\s*&?\s*{re.escape(param)}\b", body[call.end():]):
                        readers[function] = readers[call.group(1)] or _has_second_argument(function, text, m)
                        added = True
                        break
        if not added:
            return readers


def _has_second_argument(function: str, text: str, m: re.Match[str]) -> bool:
    """A wrapper taking more than the name (e.g. `positive(name, default)`) supplies a default."""
    signature_end = text.find(")", m.end())
    return "," in text[m.end():signature_end]


CONSTANT = re.compile(r"\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&\s*(?:'static\s+)?str\s*=\s*" + NAME + r"\s*;")


def scan(crates: list[Path]) -> ScanResult:
    files = [p for crate in crates for p in rust_sources(crate)]
    cleaned = {p: strip_test_items(scannable(p.read_text(encoding="utf-8"))) for p in files}
    readers = find_readers(list(cleaned.values()))
    # `const VAR: &str = "NAME";` then `config::raw(VAR)` reads NAME too.
    constants = {c: v for text in cleaned.values() for c, v in CONSTANT.findall(text)}
    call = _reader_pattern(set(readers))
    result = ScanResult()
    for path, text in cleaned.items():
        def where(offset: int) -> str:
            return f"{path}:{text.count(chr(10), 0, offset) + 1}"

        for m in call.finditer(text):
            rest = text[m.end():]
            literal = re.match(r"\s*" + NAME, rest)
            constant = re.match(r"\s*(?:[\w]+::)*([A-Z][A-Z0-9_]*)\s*[,)]", rest)
            if literal:
                result.reads.append(Read(literal.group(1), readers[m.group(1)], where(m.start())))
            elif constant and constant.group(1) in constants:
                result.reads.append(Read(constants[constant.group(1)], readers[m.group(1)], where(m.start())))
        for m in re.finditer(r"#\[(?:arg|clap)\([^\]]*\benv\s*=\s*" + NAME, text):
            result.reads.append(Read(m.group(1), False, where(m.start())))
        for m in re.finditer(r"\b(?:try_)?from_default_env\s*\(", text):
            result.reads.append(Read("RUST_LOG", True, where(m.start())))
    return result


def loopback_defaults(config_rs: Path) -> set[str]:
    """Names of `platform::config::defaults` constants that point at this machine.

    Such a default is right on a developer's machine and wrong in a container, so a deployment
    must set every one of them that a service reads.
    """
    text = scannable(config_rs.read_text(encoding="utf-8"), blank_strings=False)
    return {
        name
        for name, value in re.findall(r'pub\s+const\s+([A-Z][A-Z0-9_]+)\s*:\s*&str\s*=\s*"([^"]*)"', text)
        if re.search(r"(127\.0\.0\.1|localhost|\[::1\])", value)
    }
