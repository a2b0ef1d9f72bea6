"""examples/observed.py: two services, one trace, metrics on both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_the_observed_example_prints_one_trace_through_both_services() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSTD_")}
    result = subprocess.run(
        [sys.executable, "observed.py"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "reply: {'placed': 'tea'}",
        "shipped: tea",
        "CLIENT   Orders/Place",
        "  SERVER   Orders/Place  (orders)",
        "    PRODUCER publish orders.placed",
        "      CONSUMER process orders.placed",
        'microstd_rpc_server_requests_total{endpoint="Orders.Place",service="orders",'
        'status="200"} 1.0',
        'microstd_broker_delivered_total{pattern="orders.*",system="memory"} 1.0',
    ]
