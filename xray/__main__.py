"""`python -m xray` (and `torchrun ... -m xray train`): the `xray` command."""

import sys

from xray.cli import main

sys.exit(main())
