"""`python -m autofusion` is the same as the `autofusion` command."""

import sys

from autofusion.cli import main

sys.exit(main())
