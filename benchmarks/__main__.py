"""`python -m benchmarks` (what `make bench` runs): every bench_*.py module, one process each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    failed = []
    for path in sorted(here.glob("bench_*.py")):
        module = f"benchmarks.{path.stem}"
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], cwd=here.parent).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
