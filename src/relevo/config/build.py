"""Load a config path into a Registry, reporting every problem at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from relevo import ids
from relevo.config.checks import check_references
from relevo.config.explain import explain
from relevo.config.models import KIND_MODELS, Document, EntryHead
from relevo.config.yaml_source import (
    LineMap,
    SourceFile,
    as_line_map,
    config_files,
    line_of,
    read,
    substitute,
)
from relevo.errors import ConfigError, ConfigIssue
from relevo.registry import Entry, Registry

_HEAD_FIELDS = frozenset(EntryHead.model_fields)


Source = str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""A YAML file or folder, or mappings shaped like one file each (code-first applications)."""

MAPPING_FILE = "<dict>"
"""What errors name as the file of an entry given as a mapping."""


def load_registry(source: Source) -> Registry:
    """Parse and validate a config source. Raises ConfigError listing every issue."""
    issues: list[ConfigIssue] = []
    entries: dict[str, Entry] = {}
    raw_of: dict[str, LineMap] = {}
    invalid: set[str] = set()  # entries declared with errors (reported already)
    for document in _documents(source, issues):
        _load_document(document, entries, raw_of, issues, invalid)

    def report(entry: Entry, field: str | None, message: str) -> None:
        path = tuple(field.split(".")) if field else ()
        line = line_of(raw_of[entry.id], path) if entry.id in raw_of else entry.line
        issues.append(ConfigIssue(entry.file, line, entry.id, field, message))

    check_references(entries, report, invalid)
    registry = Registry(entries)
    if not issues and (cycle := registry.find_cycle()):
        first = entries[cycle[0]]
        report(first, "lifecycle.depends_on", "dependency cycle: " + " -> ".join(cycle))
    if issues:
        raise ConfigError(issues)
    return registry


def _documents(source: Source, issues: list[ConfigIssue]) -> list[SourceFile]:
    """Every document of a source: the parsed files of a path, or the given mappings."""
    if isinstance(source, Mapping):
        return [SourceFile(Path(MAPPING_FILE), as_line_map(source))]
    if isinstance(source, Sequence) and not isinstance(source, str):
        return [SourceFile(Path(MAPPING_FILE), as_line_map(item)) for item in source]
    root = Path(source)
    if not root.exists():
        raise ConfigError([ConfigIssue(str(root), None, None, None, "no such file or folder")])
    files = config_files(root)
    if not files:
        raise ConfigError([ConfigIssue(str(root), None, None, None, "no *.yaml or *.yml files")])
    return [found for file in files if (found := read(file, issues)) is not None]


def _load_document(
    source: SourceFile,
    entries: dict[str, Entry],
    raw_of: dict[str, LineMap],
    issues: list[ConfigIssue],
    invalid: set[str],
) -> None:
    file = str(source.path)
    base_dir = Path.cwd() if file == MAPPING_FILE else source.path.parent

    def env_error(line: int | None, path: str, message: str) -> None:
        # entries.<i>.<field...>: name the entry and the field the variable was in
        parts = path.split(".")
        entry_id = field = None
        if len(parts) > 2 and parts[0] == "entries" and parts[1].isdigit():
            raw = document.get("entries")[int(parts[1])]
            name = raw.get("name") if isinstance(raw, dict) else None
            entry_id = f"{document.get('namespace')}:{name}" if name else None
            field = ".".join(parts[2:])
        issues.append(ConfigIssue(file, line, entry_id, field or path, message))

    document = source.document
    if not isinstance(document, LineMap):
        issues.append(ConfigIssue(file, None, None, None, "expected a mapping with "
                                  "'version', 'namespace' and 'entries'"))
        return
    substitute(document, base_dir, env_error)
    try:
        head = Document.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            issues.append(ConfigIssue(file, line_of(document, loc), None,
                                      ".".join(map(str, loc)), explain(error, Document)))
        return
    raw_entries = document.get("entries") or []
    for index, raw in enumerate(raw_entries):
        line = raw.line if isinstance(raw, LineMap) else line_of(document, ("entries", index))
        entry = _load_entry(file, head.namespace, raw, line, issues)
        if entry is None:
            name = raw.get("name") if isinstance(raw, LineMap) else None
            if isinstance(name, str):  # declared, though invalid: not "missing" for others
                invalid.add(ids.entry_id(head.namespace, name))
            continue
        if entry.id in entries:
            other = entries[entry.id]
            first = f"{other.file}:{other.line}"
            issues.append(ConfigIssue(file, line, entry.id, "name",
                                      f"duplicate entry ID; first defined at {first}"))
            continue
        entries[entry.id] = entry
        raw_of[entry.id] = raw


def _load_entry(
    file: str, namespace: str, raw: Any, line: int | None, issues: list[ConfigIssue]
) -> Entry | None:
    if not isinstance(raw, LineMap):
        issues.append(ConfigIssue(file, line, None, None, "an entry must be a mapping"))
        return None
    name = raw.get("name")
    entry_id = ids.entry_id(namespace, name) if isinstance(name, str) else None

    def fail(model: type[BaseModel], exc: ValidationError) -> None:
        for error in exc.errors():
            loc = error["loc"]
            issues.append(ConfigIssue(file, line_of(raw, loc), entry_id,
                                      ".".join(map(str, loc)), explain(error, model)))

    kind = raw.get("kind")
    model = KIND_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None and kind is not None:
        allowed = ", ".join(sorted(KIND_MODELS))
        issues.append(ConfigIssue(file, line_of(raw, ("kind",)), entry_id, "kind",
                                  f"unknown kind {kind!r}; allowed: {allowed}"))
    try:
        head = EntryHead.model_validate({k: v for k, v in raw.items() if k in _HEAD_FIELDS})
    except ValidationError as exc:
        fail(EntryHead, exc)
        return None
    if model is None or entry_id is None:
        return None
    try:
        settings = model.model_validate({k: v for k, v in raw.items() if k not in _HEAD_FIELDS})
    except ValidationError as exc:
        fail(model, exc)
        return None
    settings, references = _resolve_references(settings, namespace)
    depends = [ids.resolve(d, namespace) for d in (*head.lifecycle.depends_on,
                                                    *head.lifecycle.requires)]
    return Entry(entry_id, head.kind, file, line, head, settings, references, tuple(depends))


def _resolve_references(settings: Any, namespace: str) -> tuple[Any, tuple[str, ...]]:
    """Rewrite reference fields to full IDs; return them too, as dependencies."""
    updates: dict[str, Any] = {}
    for field in ("driver", "queue", "func"):
        value = getattr(settings, field, None)
        if isinstance(value, str):
            updates[field] = ids.resolve(value, namespace)
    dead_letter = getattr(settings, "dead_letter", None)
    if dead_letter is not None:
        target = ids.resolve(dead_letter.queue, namespace)
        updates["dead_letter"] = dead_letter.model_copy(update={"queue": target})
    references = [v for k, v in updates.items() if k != "dead_letter"]
    if "dead_letter" in updates:
        references.append(updates["dead_letter"].queue)
    return settings.model_copy(update=updates), tuple(references)
