"""`python -m cnnzoo.cli ...` runs the `cnnzoo` command."""

import sys

from cnnzoo.cli.app import main

sys.exit(main())
