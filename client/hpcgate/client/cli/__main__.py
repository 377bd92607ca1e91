"""`python -m hpcgate.client.cli`: the same as the `hpcgate` command."""

import sys

from hpcgate.client.cli import main

sys.exit(main())
