#!/usr/bin/env python3
"""Generates the blocking client, sessiond/client.py, from the asyncio one,
sessiond/aio.py, with unasync (pinned in the `test` extra of pyproject.toml).

    python3 clients/python/gen_sync.py           # rewrite client.py
    python3 clients/python/gen_sync.py --check   # fail if client.py is stale

unasync drops `async`/`await` and renames tokens: `__aenter__` -> `__enter__`
and the like, plus REPLACEMENTS below. What must differ beyond that lives in
sessiond/_async_io.py and sessiond/_sync_io.py, never in hand edits of the
output. run-tests.sh runs the check, so a stale client.py fails CI.
"""

from __future__ import annotations

import argparse
import difflib
import io
import shutil
import sys
import tempfile
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "sessiond" / "aio.py"
TARGET = HERE / "sessiond" / "client.py"
COMMAND = "python3 clients/python/gen_sync.py"

REPLACEMENTS = {
    "AsyncClient": "Client",
    "AsyncLocked": "Locked",
    "_async_io": "_sync_io",
}

HEADER = (
    "# Generated from sessiond/aio.py by gen_sync.py (unasync): do not edit.\n"
    f"# Change aio.py (or _sync_io.py) and run `{COMMAND}`.\n"
)


def generate() -> str:
    """client.py as unasync makes it from aio.py, with the header."""
    import unasync  # only the generator needs it, not the package

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "_async", "aio.py")
        src.parent.mkdir()
        shutil.copyfile(SOURCE, src)
        rule = unasync.Rule("/_async/", "/_sync/", additional_replacements=REPLACEMENTS)
        unasync.unasync_files([str(src)], [rule])
        out = Path(tmp, "_sync", "aio.py").read_text(encoding="utf-8")
    leftovers = sorted(
        {
            tok.string
            for tok in tokenize.generate_tokens(io.StringIO(out).readline)
            if tok.type == tokenize.NAME
            and ("async" in tok.string.lower() or tok.string in ("aio", "await"))
        }
    )
    if leftovers:
        # An asyncio name the rules do not map would make the blocking client
        # import or call asyncio: map it in REPLACEMENTS or route it through
        # _async_io / _sync_io.
        raise SystemExit(f"gen_sync.py: asyncio names left in the blocking client: {leftovers}")
    return HEADER + out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    fresh = generate()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if not args.check:
        if current != fresh:
            TARGET.write_text(fresh, encoding="utf-8")
            print(f"gen_sync.py: wrote {TARGET}")
        return 0
    if current == fresh:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        fresh.splitlines(keepends=True),
        "sessiond/client.py (committed)",
        "sessiond/client.py (generated from aio.py)",
    )
    sys.stderr.writelines(list(diff)[:60])
    sys.stderr.write(
        "\ngen_sync.py: sessiond/client.py is not what aio.py generates. "
        f"Regenerate it with `{COMMAND}` (needs unasync, e.g. "
        "target/py-venv/bin/python after run-tests.sh) and commit it.\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
