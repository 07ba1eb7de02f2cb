"""`python -m kaizenctl`: the same CLI as the `kaizenctl` script."""

import sys

from kaizenctl.cli import main

sys.exit(main())
