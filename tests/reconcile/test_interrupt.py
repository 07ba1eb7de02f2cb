"""An apply stopped by SIGTERM (a cancelled CI job) reports what it did and what it did not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from kaizenctl.server.testing import running_server
from tests.paths import EXAMPLES
from tests.reconcile.harness import Kaizen


@pytest.mark.timeout(120)
def test_sigterm_mid_apply_reports_done_interrupted_and_never_started() -> None:
    with running_server(latency_ms=150, deploy_step_s=0.2) as server:
        env = dict(
            os.environ,
            KAIZEN_API_URL=server.url,
            KAIZEN_EMAIL=server.email,
            KAIZEN_PASSWORD=server.password,
        )
        apply = subprocess.Popen(
            [sys.executable, "-m", "kaizenctl", "apply", "--auto-approve", str(EXAMPLES)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        # Stop it once some, but not all, agents were created.
        while time.monotonic() < deadline:
            creates = [
                e for e in server.request_log() if e.method == "POST" and e.path == "/api/v1/agents"
            ]
            if len(creates) >= 2:
                break
            time.sleep(0.05)
        apply.send_signal(signal.SIGTERM)
        out, err = apply.communicate(timeout=60)

        assert apply.returncode == 130, err
        assert "Apply was interrupted; run it again to converge." in out
        assert "Done (" in out
        assert "Never started (" in out
        assert "create Agent/" in out.split("Done (")[1]

        kaizen = Kaizen(server, EXAMPLES)
        _, result = kaizen.apply()
        assert result.ok, result.outcomes
        assert not kaizen.plan().has_changes
