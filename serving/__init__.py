"""The model server that deployments talk to: package format, deployed-model state and the HTTP API.

`ServerProcess` runs `python -m serving` as a child process on a free loopback port (demos, tests,
benchmarks); importing it pulls in only the standard library.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "TOKEN_ENV", "ServerProcess", "free_port"]

TOKEN_ENV = "STOCK_AI_DEPLOYMENT__TOKEN"
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""largest request body other than a package; `deployment.max_request_bytes` has the same default."""
_ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`python -m serving` in a child process: started and waited for on enter, stopped on exit.

    Args:
        stage: the stage name the server reports.
        state_dir: its state folder (reuse it to restart with the same models).
        token: the bearer token, handed over in the environment.
        log_path: where the server's output goes; a temporary file when None.
        log_level: the server's log level ("info" logs one line per request).
        max_request_bytes: largest body of a request other than a package upload.
    """

    def __init__(self, stage: str, state_dir: Path, token: str, *, host: str = "127.0.0.1",
                 port: int | None = None, max_package_mb: float = 100.0,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, log_path: Path | None = None,
                 log_level: str = "warning", startup_timeout: float = 60.0) -> None:
        self.stage, self.state_dir, self.token, self.host = stage, Path(state_dir), token, host
        self.port = port or free_port(host)
        self.max_package_mb, self.max_request_bytes = max_package_mb, max_request_bytes
        self.log_level, self.startup_timeout = log_level, startup_timeout
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"serving-{stage}-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerProcess:
        """Start the server and wait until /health answers; raise with the log tail if it does not."""
        command = [sys.executable, "-m", "serving", "--stage", self.stage, "--host", self.host,
                   "--port", str(self.port), "--state-dir", str(self.state_dir),
                   "--max-package-mb", str(self.max_package_mb), "--max-request-bytes", str(self.max_request_bytes),
                   "--log-level", self.log_level]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, TOKEN_ENV: self.token})
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"model server on {self.url} did not come up:\n{tail}")

    def stop(self) -> None:
        """Stop the server this object started (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
