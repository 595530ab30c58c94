"""``python -m evopilot``: the same as the ``evopilot`` command."""

import sys

from evopilot.tui.cli import main

sys.exit(main())
