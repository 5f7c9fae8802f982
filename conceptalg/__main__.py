"""``python -m conceptalg`` is the ``conceptalg`` command."""

import sys

from .cli import main

sys.exit(main())
