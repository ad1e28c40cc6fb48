"""``python -m aqua``: the ``aqua`` command-line tool."""

import sys

from aqua.cli import main

sys.exit(main())
