import sys

from hmhn.cli import main

sys.exit(main())
