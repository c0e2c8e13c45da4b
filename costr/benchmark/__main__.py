import sys

from costr.benchmark.run import main

sys.exit(main())
