import sys

from depressionmlp.cli import main

sys.exit(main())
