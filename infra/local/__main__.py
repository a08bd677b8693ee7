"""`python -m infra.local [--config FILE ...]`: run the local cloud until Ctrl-C.

With no --config, LOCAL_CLOUD_CONFIGS or the repository's serverless.yml (the `ws` web
function included). PORT picks the port (0: any free one; the ready line says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.local.cloud import LocalCloud, PortTaken


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    parser.add_argument("--config", action="append", type=Path, help="a serverless.yml to serve")
    parser.add_argument("--port", type=int, default=None, help="overrides PORT")
    args = parser.parse_args()
    try:
        LocalCloud(args.config, port=args.port).run_forever()
    except PortTaken as error:
        # A newcomer's first `make run` meets this when 8000 is in use: say so, no traceback.
        sys.exit(f"local cloud: {error}")


if __name__ == "__main__":
    main()
