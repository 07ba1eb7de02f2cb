"""``kaizenctl serve`` on a busy port fails before it prints a password (issue 14, item 16)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaizenctl.commands.serve import command


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_item16_a_busy_port_fails_before_any_password_is_generated_or_printed(
    busy_port: int, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"

    result = CliRunner().invoke(
        command, ["--port", str(busy_port), "--db", str(db)], env={"KAIZEN_SERVE_PASSWORD": ""}
    )

    assert result.exit_code != 0
    assert f"cannot listen on 127.0.0.1:{busy_port}" in result.output
    assert "password" not in result.output
    assert "email" not in result.output
    assert not db.exists()  # nothing was set up either
