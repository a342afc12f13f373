"""``python -m msa_core.report``: see :func:`msa_core.report.report_main`."""

import sys

from . import report_main

sys.exit(report_main(sys.argv[1:]))
