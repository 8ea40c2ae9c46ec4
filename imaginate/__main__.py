import sys

from imaginate.cli import main

sys.exit(main())
