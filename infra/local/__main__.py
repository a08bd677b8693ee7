"""`python -m infra.local [--config FILE ...]`: run the local cloud until Ctrl-C.

With no --config, LOCAL_CLOUD_CONFIGS or the repository's serverless.yml (the `ws` web
function included). PORT picks the port (0: any free one; the ready line says which).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from infra.local.cloud import LocalCloud


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    parser.add_argument("--config", action="append", type=Path, help="a serverless.yml to serve")
    parser.add_argument("--port", type=int, default=None, help="overrides PORT")
    args = parser.parse_args()
    LocalCloud(args.config, port=args.port).run_forever()


if __name__ == "__main__":
    main()
