"""`python -m dimsum ...` is the `dimsum` command."""

import sys

from .cli import main

sys.exit(main())
