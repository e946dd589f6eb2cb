"""Reading YAML files while remembering the line of every mapping key.

Errors must name the file and line they come from, so mappings are loaded as
`LineMap`s (plain dicts that also know their lines). `${env:...}` substitution and
`file://` resolution happen here too, because both depend on where a value was written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from relevo.errors import ConfigIssue


class LineMap(dict[str, Any]):
    """A YAML mapping that knows its own line and the line of each key."""

    line: int | None  # None for a mapping given in code
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMap:
    loader.flatten_mapping(node)
    mapping = LineMap()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


def as_line_map(value: Any) -> Any:
    """A mapping given in code, as the loader would have read it (without lines).

    Mappings are copied, so substitution never changes the caller's objects; other values
    (callables included) are kept as they are.
    """
    if isinstance(value, Mapping):
        mapping = LineMap()
        mapping.line = None
        mapping.key_lines = {}
        for key, item in value.items():
            mapping[key] = as_line_map(item)
        return mapping
    if isinstance(value, list | tuple):
        return [as_line_map(item) for item in value]
    return value


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class SourceFile:
    path: Path
    document: Any


def config_files(path: Path) -> list[Path]:
    """A YAML file, or every *.yaml / *.yml below a folder, in a stable order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    return [path]


def read(path: Path, issues: list[ConfigIssue]) -> SourceFile | None:
    """Parse one file; on a YAML syntax error record an issue with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        issues.append(ConfigIssue(str(path), None, None, None, f"cannot read: {exc.strerror}"))
        return None
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        issues.append(ConfigIssue(str(path), line, None, None, f"invalid YAML: {_syntax(exc)}"))
        return None
    return SourceFile(path, document)


def _syntax(exc: yaml.YAMLError) -> str:
    """PyYAML's problem without its "<unicode string>" marks (the issue names the file)."""
    problem = getattr(exc, "problem", None)
    if problem is None:
        return str(exc)
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
    text = f"{problem}, column {mark.column + 1}" if mark is not None else str(problem)
    context_mark = getattr(exc, "context_mark", None)
    if context:
        where = f" at line {context_mark.line + 1}" if context_mark is not None else ""
        text += f" ({context}{where})"
    return text


def substitute(
    value: Any, base_dir: Path, on_error: Any, line: int | None = None, path: str = ""
) -> Any:
    """Replace `${env:...}` in every string and make `file://` paths absolute.

    `on_error(line, path, message)` records an unset variable; the value is kept as written.
    """
    if isinstance(value, LineMap):
        for key in list(value):
            where = f"{path}.{key}" if path else str(key)
            value[key] = substitute(value[key], base_dir, on_error, value.key_lines.get(key), where)
        return value
    if isinstance(value, list):
        return [
            substitute(item, base_dir, on_error, line, f"{path}.{i}")
            for i, item in enumerate(value)
        ]
    if not isinstance(value, str):
        return value
    if "${env:" in value:
        value = _ENV.sub(lambda m: _env_value(m, on_error, line, path), value)
    if value.startswith("file://") and not value.startswith("file:///"):
        value = "file://" + str((base_dir / value[len("file://") :]).resolve())
    return value


def _env_value(match: re.Match[str], on_error: Any, line: int | None, path: str) -> str:
    name, default = match.group(1), match.group(2)
    found = os.environ.get(name)
    if found is not None:
        return found
    if default is not None:
        return default
    on_error(line, path, f"environment variable {name} is not set (write ${{env:{name}:-default}})")
    return match.group(0)


def line_of(document: Any, path: tuple[Any, ...]) -> int | None:
    """The line of the deepest key along `path` that exists in the YAML tree."""
    line = document.line if isinstance(document, LineMap) else None
    node = document
    for key in path:
        if isinstance(node, LineMap) and key in node:
            line = node.key_lines.get(key, line)
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
            if isinstance(node, LineMap):
                line = node.line
        else:
            break
    return line
