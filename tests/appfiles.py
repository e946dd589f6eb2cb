"""Writing small applications (YAML + handler modules) into a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

HEADER = 'version: "1.0"\nnamespace: {namespace}\nentries:\n'


def write_app(folder: Path, entries: str, namespace: str = "app", **files: str) -> Path:
    """`entries` is the YAML list under `entries:`; `files` are extra files (name -> text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(textwrap.dedent(text))
    path = folder / "app.yaml"
    path.write_text(
        HEADER.format(namespace=namespace) + textwrap.indent(textwrap.dedent(entries), "  ")
    )
    return path


MEMORY_DRIVER = """\
- name: mem
  kind: queue.driver.memory
"""
