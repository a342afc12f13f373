"""``python -m msa_core.cli``: the same as the ``msa`` command."""

import sys

from . import main

sys.exit(main())
