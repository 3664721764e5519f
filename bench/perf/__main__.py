"""`python -m bench.perf`: the harness's own load benchmark (see `bench.perf.loadbench`); `python -m bench.perf held`:
memory and file descriptors per waiting long-poll client (see `bench.perf.held`)."""

import sys

if sys.argv[1:2] == ["held"]:
    from bench.perf.held import main as held_main

    sys.exit(held_main(sys.argv[2:]))

from bench.perf.loadbench import main  # noqa: E402

sys.exit(main())
