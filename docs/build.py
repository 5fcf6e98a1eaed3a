"""Build the documentation as CI does: the HTML, then every example on the pages run as a
doctest, both with warnings as errors. One command, from the repository root:

    python docs/build.py            # HTML in docs/_build/html (open index.html)

The two builders share one environment (docs/_build/doctrees), so the sources are read once.
Extra arguments go to both ``sphinx-build`` runs (``-E`` rereads everything, ``-q`` is quiet).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sphinx.cmd.build import build_main

DOCS = Path(__file__).resolve().parent
BUILD = DOCS / "_build"
STRICT = ["-W", "--keep-going", "-n", "-d", str(BUILD / "doctrees")]


def main(arguments: list[str]) -> int:
    started = time.monotonic()
    for builder in ("html", "doctest"):
        code = build_main([*STRICT, *arguments, "-b", builder, str(DOCS), str(BUILD / builder)])
        if code:
            print(f"docs: the {builder} build failed (exit {code})", file=sys.stderr)
            return code
    print(f"docs: HTML in {BUILD / 'html' / 'index.html'}; doctests passed; {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
