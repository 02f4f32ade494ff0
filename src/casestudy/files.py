"""Reading and writing the study's plain-text files safely.

- YAML is always loaded with a *safe* loader; every mapping remembers the line of each key,
  so validation can name the line a problem is on.
- Text is decoded as UTF-8 (a BOM is dropped); a file that is not UTF-8 is read as
  Windows-1252, the encoding Word exports, and the caller is told so it can warn.
- Writes are atomic: a temporary file in the same folder, flushed and fsynced, then renamed
  over the target, so a crash or Ctrl-C never leaves a half-written file.
- Names that end up in paths (district ids, coder names) are checked before use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is safe to use as one path component, else raise UsageError."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(
            f"{what} {name!r} is not a valid name: use letters, digits, '-' and '_' "
            "(at most 64, starting with a letter or digit; no '/', '.', or spaces)"
        )
    return name


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(NAME_RE.match(name))


# --------------------------------------------------------------------------- YAML


class LineDict(dict):
    """A dict from YAML that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list


# libyaml's parser when PyYAML was built with it (PyPI wheels are): 5-10x faster on findings and
# codebooks; the constructors below (safe ones only) are the same either way.
_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """SafeLoader that records line numbers and duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    result.duplicate_keys = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in result:
            result.duplicate_keys.append((key, key_node.start_mark.line + 1))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
# Dates stay strings: "2023-10-17" is shown as written, never re-formatted.
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_str)


class YamlError(Exception):
    """A YAML syntax error, with the 1-based line it was found on."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.message = message
        self.line = line


def load_yaml(text: str, line_offset: int = 0) -> Any:
    """Parse YAML safely; raise :class:`YamlError` with a 1-based line on bad syntax."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + line_offset if mark is not None else None
        what = exc.problem or exc.context or "not valid YAML"
        raise YamlError(f"not valid YAML: {what}", line) from None
    except yaml.YAMLError as exc:  # pragma: no cover - other YAML errors carry no mark
        raise YamlError(f"not valid YAML: {exc}", None) from None


# --------------------------------------------------------------------------- text


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode file bytes; return ``(text, encoding)`` with newlines normalised to ``\\n``.

    UTF-8 (with or without BOM) first; otherwise Windows-1252, which is what Word writes for
    "plain text" on Windows and never fails on real text (its five undefined bytes are
    decoded as latin-1). The caller warns when the encoding is not UTF-8.
    """
    try:
        text = data.decode("utf-8-sig")
        encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="strict") if _cp1252_ok(data) else data.decode("latin-1")
        encoding = "cp1252"
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


def _cp1252_ok(data: bytes) -> bool:
    try:
        data.decode("cp1252")
        return True
    except UnicodeDecodeError:
        return False


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    If the block raises (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file_mode(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0666 minus the umask
    (mkstemp would otherwise leave it readable by its owner only)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb", encoding=None) as fh:
        fh.write(data)
