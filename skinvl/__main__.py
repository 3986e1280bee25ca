import sys

from skinvl.cli import main

sys.exit(main())
