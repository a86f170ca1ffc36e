"""`python -m optlang`: the `optlang` command line."""
import sys

from optlang.cli import main

sys.exit(main())
