import sys

from costr.cli.main import main

sys.exit(main())
