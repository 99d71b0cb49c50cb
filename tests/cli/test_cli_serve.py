"""``leadsq-async emulator`` says what it served when it stops."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

COMMAND = [sys.executable, "-m", "leadsq_async.cli"]


def test_the_emulator_says_what_it_served_when_it_stops() -> None:
    """Requests, refusals, and both by endpoint, after Ctrl-C."""
    process = subprocess.Popen(
        [*COMMAND, "emulator", "--port", "0", "--rate-limit", "2/60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if "LSQ_HOST=" in line:
                url = line.split("LSQ_HOST=", 1)[1].split()[0]
            if "Ctrl-C" in line:
                break
        assert url
        path = "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead"
        keys = {"accessKey": "demo-access-key", "secretKey": "demo-secret-key"}
        with httpx.Client(base_url=url) as client:
            codes = [
                client.post(path, params={**keys, "leadId": "x"}, json={}).status_code
                for _ in range(3)
            ]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert codes[-1] == 429, codes  # the third of 2 a minute
    summary = stderr.split("emulator stopped; it served:\n", 1)[1].splitlines()
    assert summary[0].startswith("  3 requests, 2 accepted, 1 refused by a rate limit")
    assert "    OpportunityManagement.svc/GetOpportunitiesOfLead: 3 requests, 1 refused" in summary
