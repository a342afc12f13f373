"""The app served by ``streamlit run app.py`` for the browser tests and benchmarks: one way to start it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(home: str | Path, log: Path, **env: str) -> Iterator[str]:
    """``streamlit run app.py`` on a free port with ``MSA_HOME=home`` (and ``env`` on top of this process's
    environment); yields its URL once ``/_stcore/health`` answers, and stops it afterwards. Its output goes
    to ``log``, whose tail a failed start reports."""
    port = free_port()
    environment = dict(os.environ, MSA_HOME=str(home), PYTHONPATH=str(ROOT),
                       MSA_TORCH_THREADS=os.environ.get("MSA_TORCH_THREADS", "1"))
    environment.update(env)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
