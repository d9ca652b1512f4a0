"""``python -m marquee_ingest``: the same as the ``marquee-ingest`` command."""

import sys

from marquee_ingest.cli import main

sys.exit(main())
