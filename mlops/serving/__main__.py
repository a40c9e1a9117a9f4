"""`python -m mlops.serving [--catalogue DIR | --config PATH] [--default-model NAME] [--host H] [--port N]`: the service as a process."""

from __future__ import annotations

import argparse
import sys

from mlops.config import Settings
from mlops.errors import ConfigError
from mlops.serving.host import describe_default
from mlops.serving.server import DEFAULT_HOST, DEFAULT_PORT, run, serving_configs
from mlops.text import printable


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m mlops.serving", description="Serve the champion models over HTTP.")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--catalogue", help=f"serve every model of this config directory (default: MLOPS_CATALOGUE, "
                                          f"{settings.catalogue_dir})")
    what.add_argument("--config", help="serve only the model of this pipeline config file (YAML)")
    parser.add_argument("--default-model", help="the model POST /predict and /labels answer for (default: "
                                                "MLOPS_DEFAULT_MODEL, else the config with serving.default: true, "
                                                "else the only model)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        configs, problems = serving_configs(args.config, args.catalogue or settings.catalogue_dir)
        default_model = args.default_model or settings.default_model
        default_line = describe_default(configs, default_model)  # a default that is not served: exit 2 now
    except ConfigError as err:
        print(f"error: {printable(err)}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"warning: {printable(problem)}", file=sys.stderr)
    print(default_line, file=sys.stderr)
    run(configs, settings.mlflow_tracking_uri or settings.default_tracking_uri(), host=args.host, port=args.port,
        default_model=default_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
