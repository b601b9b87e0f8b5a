"""C{python -m vesyncd.sim}: the same as C{vesyncd-sim}."""

import sys

from vesyncd.sim.main import main

if __name__ == "__main__":
    sys.exit(main())
