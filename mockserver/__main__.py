"""``python -m mockserver`` is the ``cumulonimbus-mock`` command."""

from .cli import main

raise SystemExit(main())
