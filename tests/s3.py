"""An S3-compatible endpoint for tests: moto in server mode, on a loopback port, dummy credentials."""

from __future__ import annotations

import sys
from pathlib import Path

from mlops.local import stack

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def moto_service(port: int) -> stack.Service:
    """`moto_server` as a stack Service, so the fixtures start and stop it like the real servers."""
    binary = Path(sys.executable).parent / "moto_server"
    return stack.Service(
        name="moto", command=[str(binary), "-H", "127.0.0.1", "-p", str(port)],
        health_url=f"http://127.0.0.1:{port}/moto-api/", url=f"http://127.0.0.1:{port}",
    )
