"""python -m petseg ...: the same as the `petseg` command."""

import sys

from petseg.cli import main

sys.exit(main())
