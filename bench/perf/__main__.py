"""`python -m bench.perf`: the harness's own load benchmark (see `bench.perf.loadbench`)."""

import sys

from bench.perf.loadbench import main

sys.exit(main())
