"""The README's Python snippets are the examples' code, verbatim, and that
code runs against a real sessiond."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from _support import EXAMPLES, REPO

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"<!-- snippet: (?P<file>[\w./-]+)#(?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)```", re.S)


def region(path: Path, name: str) -> str:
    text = path.read_text()
    m = re.search(rf"^[ \t]*# \[snippet:{name}\]\n(.*?)^[ \t]*# \[/snippet:{name}\]\n", text, re.S | re.M)
    assert m, f"no snippet region {name!r} in {path}"
    return textwrap.dedent(m.group(1))


def test_every_python_block_of_the_readme_is_tested_code():
    readme = README.read_text()
    blocks = readme.count("```python")
    snippets = list(MARKER.finditer(readme))
    assert blocks >= 2 and len(snippets) == blocks, "every ```python block has a snippet marker"
    for m in snippets:
        want = region(REPO / m["file"], m["name"])
        assert m["code"] == want, f"README block {m['file']}#{m['name']} differs from the code"


def test_the_quickstart_runs(server):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--target", server.target],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not found: SESSION_NOT_FOUND" in out.stdout
    assert "LOCK_HELD" in out.stdout
    assert "b'curious'" in out.stdout
    assert "{'lang': 'en', 'mood': 'curious', 'points': '1', 'turns': '1'}" in out.stdout
