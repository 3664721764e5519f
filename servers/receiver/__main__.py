"""Run the receiver as its own process: `python -m servers.receiver --secret whsec_... [--records DIR] [--port P]`."""

from __future__ import annotations

import argparse
import logging
import sys

from ..common import serve
from .app import create_app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m servers.receiver", description=__doc__)
    ap.add_argument("--secret", required=True, help="Standard Webhooks secret, 'whsec_' + base64")
    ap.add_argument("--records", default=None, help="directory for record files")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s receiver %(levelname)s %(message)s")
    try:
        app = create_app(args.secret, records_dir=args.records)
    except ValueError as e:
        print(f"receiver: --secret: {e}", file=sys.stderr)
        return 2
    serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
