"""`python -m promptlang`: the command line."""

import sys

from promptlang.cli import main

sys.exit(main())
