"""``python -m isrinject.cli``: the ``isrinject`` command without its entry point script."""

import sys

from . import main

sys.exit(main())
