"""``python -m gateway.demo``: the README's ``make demo``."""

import sys

from gateway.demo.run import main

sys.exit(main())
