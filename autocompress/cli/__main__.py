"""``python -m autocompress.cli``."""

from autocompress.cli import main

raise SystemExit(main())
