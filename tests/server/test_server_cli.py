"""``kaizenctl serve``: help, the loopback rule, and a real start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from kaizenctl.commands.serve import command
from kaizenctl.server.listen import bind

FLAGS = [
    "--host",
    "--port",
    "--db",
    "--email",
    "--password-env",
    "--admin",
    "--latency-ms",
    "--rate-429",
    "--retry-after-s",
    "--rate-503",
    "--rate-drop-after-commit",
    "--rate-503-after-commit",
    "--access-token-ttl-s",
    "--page-size-cap",
    "--deploy-step-s",
    "--fault-seed",
    "--log-level",
]


def test_help_explains_every_flag() -> None:
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    for flag in FLAGS:
        assert flag in result.output
    assert "simulate_deploy_failure" in result.output


def test_refuses_public_host_without_password() -> None:
    result = CliRunner().invoke(command, ["--host", "0.0.0.0"], env={"KAIZEN_SERVE_PASSWORD": ""})
    assert result.exit_code != 0
    assert "refusing" in result.output


def _free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_serve_starts_prints_and_persists(tmp_path: Path) -> None:
    port = _free_port()
    db = tmp_path / "state.db"
    env = {k: v for k, v in os.environ.items() if k != "KAIZEN_SERVE_PASSWORD"}
    args = [
        sys.executable,
        "-m",
        "kaizenctl.cli",
        "serve",
        "--port",
        str(port),
        "--db",
        str(db),
        "--log-level",
        "warning",
    ]
    code = "import sys; from kaizenctl.cli import main; sys.argv[0] = 'kaizenctl'; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args[3:]], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert f"http://127.0.0.1:{port}" in lines[0]
        password = re.search(r"password: (\S+)", lines[2])
        assert password is not None
        url = f"http://127.0.0.1:{port}/api/v1/auth/login"
        for _ in range(100):
            try:
                response = httpx.post(
                    url, data={"username": "dev@kaizen.local", "password": password.group(1)}
                )
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert response.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/admin/faults").status_code == 404  # no --admin
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
