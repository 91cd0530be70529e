"""The ``cumulonimbus-conformance`` command: the installed suite, run by pytest.

    cumulonimbus-conformance --base-url https://files.example.org/api [pytest options]

is ``pytest --pyargs conformance ...`` with the suite's own package given by path, so a
``conformance`` package in the current directory cannot stand in for it, and with no ini
file (``-c /dev/null``), so the current project's pytest settings (``addopts``, warning
filters) cannot change how the suite judges. Settings come from the command line and the
environment; a later ``-c FILE`` brings an ini file's ``cumulonimbus_*`` settings back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import pytest

    args = list(sys.argv[1:] if argv is None else argv)
    suite = str(Path(__file__).resolve().parent)
    # -p no:cacheprovider: judging a deployment leaves no .pytest_cache where it was run.
    return int(pytest.main(["-c", os.devnull, "-p", "no:cacheprovider", suite, *args]))


if __name__ == "__main__":
    raise SystemExit(main())
