"""``python -m action``: the Action's entry (see action/entry.py)."""

import sys

from action.entry import main

sys.exit(main())
