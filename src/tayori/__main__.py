"""`python -m tayori` is the `tayori` command."""

import sys

from tayori.cli import main

sys.exit(main())
