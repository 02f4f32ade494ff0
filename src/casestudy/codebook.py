"""The codebook: conditions, their child codes, code groups and auto-coding patterns.

``codebook.yaml`` holds ``name``, ``groups`` (id → label) and a list of ``codes``. Each code
has an ``id``, ``label``, ``group`` (inherited from its parent when absent), an optional
``parent``, ``definition``, ``use_when``, ``not_when``, ``example``, ``patterns`` for
auto-coding and ``survey_constructs`` (``population/construct`` ids) it relates to.

A pattern is a phrase (``data wall``, matched on lemmas), ``{phrase: ..., roles: [...]}``,
``{tokens: [...]}`` (a spaCy token pattern) or ``{regex: ...}`` (one token's text), each with
an optional ``roles`` list that restricts it to speakers with those roles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem
from .files import LineDict, YamlError, is_valid_name, load_yaml

REQUIRED_TEXT = ("label", "definition")
RECOMMENDED_TEXT = ("use_when", "not_when", "example")
PATTERN_KINDS = ("phrase", "tokens", "regex")


@dataclass(frozen=True)
class Pattern:
    id: str
    code_id: str
    kind: str  # phrase | tokens | regex
    value: Any  # str for phrase and regex, a list of token dicts for tokens
    roles: tuple[str, ...] = ()
    line: int | None = None

    def describe(self) -> str:
        """How a pattern reads in an explanation: ``phrase "data wall"``, ``tokens [{LEMMA: look},
        {LOWER: at}]``, ``regex /^(emerging)$/``, with ``(said by student)`` for a role rule."""
        if self.kind == "phrase":
            text = f'phrase "{self.value}"'
        elif self.kind == "regex":
            text = f"regex /{self.value}/"
        else:
            text = f"tokens {_flow(self.value)}"
        if self.roles:
            text += f" (said by {' or '.join(self.roles)})"
        return text


def _flow(value: Any) -> str:
    """A token pattern written the way the codebook writes it (YAML flow style)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_flow(arg)}" for key, arg in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    plain = isinstance(value, str) and value and value.replace("-", "").replace("_", "").isalnum()
    return value if plain else json.dumps(value)


@dataclass(frozen=True)
class Code:
    id: str
    label: str
    group: str
    parent: str | None
    definition: str
    use_when: str = ""
    not_when: str = ""
    example: str = ""
    patterns: tuple[Pattern, ...] = ()
    survey_constructs: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Codebook:
    name: str
    groups: dict[str, str]
    codes: dict[str, Code]
    path: str = "codebook.yaml"
    _children: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        children: dict[str, list[str]] = {}
        for code in self.codes.values():
            if code.parent:
                children.setdefault(code.parent, []).append(code.id)
        object.__setattr__(self, "_children", {k: tuple(v) for k, v in children.items()})

    def children(self, code_id: str) -> tuple[str, ...]:
        return self._children.get(code_id, ())

    def roots(self, group: str | None = None) -> list[Code]:
        return [c for c in self.codes.values() if c.parent is None and (group is None or c.group == group)]

    def ancestors(self, code_id: str) -> list[str]:
        """Parent, grandparent, ... of ``code_id`` (stops on a cycle)."""
        out: list[str] = []
        seen = {code_id}
        parent = self.codes[code_id].parent if code_id in self.codes else None
        while parent and parent in self.codes and parent not in seen:
            out.append(parent)
            seen.add(parent)
            parent = self.codes[parent].parent
        return out

    def condition_of(self, code_id: str) -> str:
        """The top-level code above ``code_id`` (itself when it is top-level)."""
        chain = [code_id, *self.ancestors(code_id)]
        return chain[-1]

    def in_group(self, group: str) -> list[Code]:
        return [c for c in self.codes.values() if c.group == group]

    def patterns(self) -> list[Pattern]:
        return [p for c in self.codes.values() for p in c.patterns]


def load_codebook(path: Path, rel: str = "codebook.yaml") -> tuple[Codebook | None, list[Problem]]:
    """Load and validate ``codebook.yaml``; return the codebook (None if unusable) and problems."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [Problem(rel, None, "bad-encoding", f"not UTF-8 text ({exc.reason})")]
    try:
        data = load_yaml(text)
    except YamlError as exc:
        return None, [Problem(rel, exc.line, "bad-yaml", exc.message)]
    problems = list(_validate(data, rel))
    if any(p.severity == "error" and p.type in ("bad-yaml", "bad-codebook") for p in problems):
        return None, problems
    return _build(data, rel), problems


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _validate(data: Any, rel: str) -> Iterator[Problem]:
    if not isinstance(data, LineDict):
        yield Problem(rel, 1, "bad-codebook", "the codebook must be a mapping with 'groups' and 'codes'")
        return
    for key, line in getattr(data, "duplicate_keys", []):
        yield Problem(rel, line, "duplicate-key", f"key {key!r} appears twice")
    groups = data.get("groups") or {}
    if not isinstance(groups, dict):
        yield Problem(rel, data.line_of("groups"), "bad-codebook", "'groups' must map group ids to labels")
        groups = {}
    codes = data.get("codes")
    if not isinstance(codes, list) or not codes:
        yield Problem(rel, data.line_of("codes"), "bad-codebook", "'codes' must be a non-empty list")
        return
    seen: dict[str, int] = {}
    parents: dict[str, tuple[str, int]] = {}
    for index, entry in enumerate(codes):
        line = codes.item_lines[index] if hasattr(codes, "item_lines") else None
        if not isinstance(entry, LineDict):
            yield Problem(rel, line, "bad-code", "each code must be a mapping with at least 'id', 'label' and 'definition'")
            continue
        code_id = entry.get("id")
        if not is_valid_name(code_id):
            yield Problem(rel, entry.line_of("id"), "bad-code-id", f"code id {code_id!r} must be letters, digits, '-' or '_'")
            continue
        if code_id in seen:
            yield Problem(rel, entry.line_of("id"), "duplicate-code", f"code id {code_id!r} is already defined on line {seen[code_id]}")
            continue
        seen[code_id] = entry.line_of("id")
        for key in REQUIRED_TEXT:
            if not _text(entry.get(key)):
                yield Problem(rel, entry.line, "missing-field", f"code {code_id!r} has no {key}")
        if entry.get("parent") is not None:
            parents[code_id] = (str(entry.get("parent")), entry.line_of("parent"))
        elif entry.get("group") is None:
            yield Problem(rel, entry.line, "missing-field", f"top-level code {code_id!r} has no group")
        group = entry.get("group")
        if group is not None and group not in groups:
            yield Problem(rel, entry.line_of("group"), "unknown-group",
                          f"code {code_id!r} is in group {group!r}, which 'groups' does not list ({', '.join(map(str, groups)) or 'none'})")
        yield from _validate_patterns(entry, code_id, rel)
        constructs = entry.get("survey_constructs") or []
        if not isinstance(constructs, list) or not all(isinstance(c, str) and c.count("/") == 1 for c in constructs):
            yield Problem(rel, entry.line_of("survey_constructs"), "bad-construct-ref",
                          f"code {code_id!r}: survey_constructs must list 'population/construct' ids")
    for code_id, (parent, line) in parents.items():
        if parent not in seen:
            yield Problem(rel, line, "unknown-parent", f"code {code_id!r} names parent {parent!r}, which is not a code")
    reported: set[str] = set()
    for start in parents:
        chain = [start]
        node = start
        while node in parents and parents[node][0] in seen:
            node = parents[node][0]
            if node in chain:
                cycle = chain[chain.index(node):] + [node]
                if not reported.intersection(cycle):
                    yield Problem(rel, parents[node][1], "hierarchy-cycle", "codes form a cycle: " + " -> ".join(cycle))
                    reported.update(cycle)
                break
            chain.append(node)


def _validate_patterns(entry: LineDict, code_id: str, rel: str) -> Iterator[Problem]:
    patterns = entry.get("patterns") or []
    if not isinstance(patterns, list):
        yield Problem(rel, entry.line_of("patterns"), "bad-pattern", f"code {code_id!r}: 'patterns' must be a list")
        return
    for index, pattern in enumerate(patterns):
        line = patterns.item_lines[index] if hasattr(patterns, "item_lines") else entry.line_of("patterns")
        where = f"code {code_id!r}, pattern {index + 1}"
        if isinstance(pattern, str):
            if not pattern.strip():
                yield Problem(rel, line, "bad-pattern", f"{where}: the phrase is empty")
            continue
        if not isinstance(pattern, dict):
            yield Problem(rel, line, "bad-pattern", f"{where}: a pattern is a phrase or a mapping with phrase, tokens or regex")
            continue
        kinds = [k for k in PATTERN_KINDS if k in pattern]
        if len(kinds) != 1:
            yield Problem(rel, line, "bad-pattern", f"{where}: give exactly one of phrase, tokens, regex")
            continue
        kind = kinds[0]
        value = pattern[kind]
        roles = pattern.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            yield Problem(rel, line, "bad-pattern", f"{where}: roles must be a list of role names")
        if kind == "phrase" and not (isinstance(value, str) and value.strip()):
            yield Problem(rel, line, "bad-pattern", f"{where}: the phrase is empty")
        elif kind == "regex":
            try:
                re.compile(str(value))
            except re.error as exc:
                yield Problem(rel, line, "bad-pattern", f"{where}: the regular expression does not compile ({exc})")
        elif kind == "tokens":
            message = _check_token_pattern(value)
            if message:
                yield Problem(rel, line, "bad-pattern", f"{where}: the token pattern does not compile ({message})")


def _check_token_pattern(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(t, dict) for t in value):
        return "tokens must be a non-empty list of token mappings"
    from .nlp import blank_nlp  # spaCy validates its own pattern language

    from spacy.matcher import Matcher

    matcher = Matcher(blank_nlp().vocab, validate=True)
    try:
        matcher.add("check", [[dict(t) for t in value]])
    except Exception as exc:  # spaCy raises ValueError/MatchPatternError with details
        return " ".join(str(exc).split())[:200]
    return None


def _build(data: LineDict, rel: str) -> Codebook:
    groups = {str(k): _text(v.get("label") if isinstance(v, dict) else v) for k, v in (data.get("groups") or {}).items()}
    raw: dict[str, LineDict] = {}
    for entry in data["codes"]:
        if isinstance(entry, LineDict) and is_valid_name(entry.get("id")) and entry["id"] not in raw:
            raw[entry["id"]] = entry

    def group_of(code_id: str, depth: int = 0) -> str:
        entry = raw[code_id]
        if entry.get("group") is not None or depth > len(raw):
            return str(entry.get("group") or "")
        parent = entry.get("parent")
        return group_of(parent, depth + 1) if parent in raw else ""

    codes: dict[str, Code] = {}
    for code_id, entry in raw.items():
        patterns = []
        for index, pattern in enumerate(entry.get("patterns") or []):
            if isinstance(pattern, str):
                pattern = {"phrase": pattern}
            if not isinstance(pattern, dict):
                continue
            kinds = [k for k in PATTERN_KINDS if k in pattern]
            if len(kinds) != 1:
                continue
            line = entry["patterns"].item_lines[index]
            patterns.append(Pattern(
                id=str(pattern.get("id") or f"{code_id}/{index + 1}"),
                code_id=code_id,
                kind=kinds[0],
                value=pattern[kinds[0]] if kinds[0] == "tokens" else str(pattern[kinds[0]]),
                roles=tuple(pattern.get("roles") or ()),
                line=line,
            ))
        parent = entry.get("parent")
        codes[code_id] = Code(
            id=code_id,
            label=_text(entry.get("label")),
            group=group_of(code_id),
            parent=str(parent) if parent is not None else None,
            definition=_text(entry.get("definition")),
            use_when=_text(entry.get("use_when")),
            not_when=_text(entry.get("not_when")),
            example=_text(entry.get("example")),
            patterns=tuple(patterns),
            survey_constructs=tuple(entry.get("survey_constructs") or ()),
            line=entry.line,
        )
    return Codebook(name=_text(data.get("name")) or "Codebook", groups=groups, codes=codes, path=rel)
