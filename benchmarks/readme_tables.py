"""The README's generated result blocks, rendered from `benchmarks/results/*.json`.

    python benchmarks/readme_tables.py           # rewrite the blocks (make bench-report)
    python benchmarks/readme_tables.py --check   # exit 1 naming each block that differs (the tests run it)

A block sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`: NAME is a script in this
folder whose `table(result)` renders `results/NAME.json`, the same text the script prints after a
run. The README's other tables are still copied by hand; each one moves here by gaining a
`table()` and markers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
_BLOCK = re.compile(r"(<!-- results:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def _render(name: str) -> str:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", HERE / f"{name}.py")
    if spec is None or not (HERE / f"{name}.py").is_file():
        raise SystemExit(f"README block results:{name} names no script benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = json.loads((HERE / "results" / f"{name}.json").read_text())
    return module.table(result).rstrip("\n") + "\n"


def regenerate(text: str) -> tuple[str, list[str]]:
    """`text` with every block rendered afresh, and the names of the blocks that changed."""
    changed: list[str] = []

    def fill(m: re.Match) -> str:
        body = _render(m["name"])
        if body != m["body"]:
            changed.append(m["name"])
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(fill, text), changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from its JSON")
    ap.add_argument("--readme", type=Path, default=README, help=f"the file to fill (default {README})")
    args = ap.parse_args()
    text = args.readme.read_text()
    new, changed = regenerate(text)
    if args.check:
        if changed:
            print(f"{args.readme}: results blocks {', '.join(changed)} differ from benchmarks/results/*.json; "
                  "run `make bench-report` and commit", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    print(f"{args.readme}: {len(_BLOCK.findall(text))} blocks, {len(changed)} rewritten"
          + (f" ({', '.join(changed)})" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
