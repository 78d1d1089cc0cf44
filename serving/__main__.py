"""Run the model server: `python -m serving --stage staging --port 8001 --state-dir DIR`.

The deployment token is read from an environment variable (never a flag, so it stays out of `ps`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from serving import DEFAULT_MAX_REQUEST_BYTES, TOKEN_ENV

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before anything heavy is imported, so --help answers at once."""
    parser = argparse.ArgumentParser(prog="python -m serving",
                                     description="Serve deployed prediction models over HTTP.")
    parser.add_argument("--stage", required=True, help="name reported by the API, e.g. staging or production")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (default %(default)s)")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="where deployed models live; reloaded on restart")
    parser.add_argument("--token-env", default=TOKEN_ENV,
                        help="environment variable holding the bearer token (default %(default)s)")
    parser.add_argument("--max-package-mb", type=float, default=100.0,
                        help="largest accepted deployment package in MiB (default %(default)s)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest body of any other request, e.g. /v1/predict (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, check the token, then serve with one uvicorn worker."""
    args = parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if not token.strip():
        raise SystemExit(f"python -m serving: refusing to start: set the deployment token in ${args.token_env}")
    if args.max_package_mb <= 0:
        raise SystemExit("python -m serving: --max-package-mb must be positive")
    if args.max_request_bytes <= 0:
        raise SystemExit("python -m serving: --max-request-bytes must be positive")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from serving.app import create_app

    app = create_app(args.stage, args.state_dir, token.strip(), int(args.max_package_mb * 1024 * 1024),
                     args.max_request_bytes)
    # One worker: deployed models are swapped in this process's memory.
    uvicorn.run(app, host=args.host, port=args.port, workers=1, access_log=False, log_level=args.log_level)


if __name__ == "__main__":
    main()
