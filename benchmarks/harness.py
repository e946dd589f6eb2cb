"""Small shared pieces: building a throwaway app folder and printing a ratio table."""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path


def app_folder(entries: str, namespace: str = "bench") -> Path:
    folder = Path(tempfile.mkdtemp(prefix="relevo-bench-"))
    (folder / "app.yaml").write_text(
        f'version: "1.0"\nnamespace: {namespace}\nentries:\n'
        + textwrap.indent(textwrap.dedent(entries), "  ")
    )
    return folder


def table(title: str, rows: list[tuple[str, float]], baseline: str, unit: str = "msgs/s") -> None:
    """Print rows with each one's ratio to the `baseline` row."""
    base = dict(rows)[baseline]
    print(f"\n{title}")
    print(f"  {'':<46} {unit:>12} {'vs ' + baseline:>22}")
    for name, value in rows:
        print(f"  {name:<46} {value:>12,.0f} {value / base:>21.2f}x")


def quantile(values: list[float], q: float) -> float:
    """The value below which a fraction `q` of `values` lies (p50: 0.5, p99: 0.99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
