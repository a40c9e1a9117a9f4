"""`python -m mlops.serving --config PATH [--host H] [--port N]`: the service as a process."""

from __future__ import annotations

import argparse
import sys

from mlops.config import Settings, load_config
from mlops.errors import ConfigError
from mlops.serving.server import DEFAULT_HOST, DEFAULT_PORT, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.serving", description="Serve the champion model over HTTP.")
    parser.add_argument("--config", required=True, help="pipeline config file (YAML)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    settings = Settings()
    run(config, settings.mlflow_tracking_uri or settings.default_tracking_uri(), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
