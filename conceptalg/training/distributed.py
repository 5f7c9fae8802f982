"""The process-group helpers under their older name: this module *is*
:mod:`conceptalg.distributed` (the bottom floor every layer may use), so patching either name
patches both."""

import sys

from .. import distributed as _bottom

sys.modules[__name__] = _bottom
