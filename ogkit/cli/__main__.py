"""``python -m ogkit.cli``: the same as the ``ogkit`` command."""

import sys

from ogkit.cli.app import main

sys.exit(main())
