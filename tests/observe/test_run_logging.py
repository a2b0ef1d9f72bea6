"""`microstd run`'s logs: a line per start and stop step, request and trace ids, no secrets."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _children import Lines, finish, run

from microstd.client import Client

PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


@pytest.fixture
def secret_url(redis_url: str) -> str:
    """The test Redis, through a user with a password (which must never be logged)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.execute_command("ACL", "SETUSER", "obs", "on", f">{PASSWORD}", "~*", "&*", "+@all")
    finally:
        client.close()
    return redis_url.replace("redis://", f"redis://obs:{PASSWORD}@")


def test_json_lines_for_each_step_with_request_and_trace_ids_and_no_secret(
    secret_url: str,
) -> None:
    name = f"front{uuid.uuid4().hex[:6]}"
    proc, out = run(
        "--log-format",
        "json",
        env={
            "OBS_NAME": name,
            "MICROSTD_REGISTRY": secret_url,
            "OBS_BROKER": secret_url,
            "OBS_STORE": "memory://",
            "OBS_TRACE": "1",
        },
    )
    try:
        out.wait_for("ready")
        records = [json.loads(line) for line in out.lines]
        steps = [r["message"] for r in records]
        assert any(m.startswith(f"{name}: registry redis://obs:***@") for m in steps), steps
        assert any(m.startswith(f"{name}: broker redis://obs:***@") for m in steps), steps
        assert any(m.startswith(f"{name}: store memory://") for m in steps), steps
        assert any(m.startswith(f"{name}: listening on http://127.0.0.1:") for m in steps), steps
        assert f"{name}: endpoints Front.Order, Obs.Spans" in steps
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)

        async def call() -> None:
            async with Client(secret_url) as client:
                await client.call(name, "Front.Order", {"item": "tea"}, metadata={})

        asyncio.run(call())
        line = json.loads(out.wait_for("ordering tea"))
        assert line["logger"] == "proc_observed"
        assert len(line["request_id"]) == 32
        assert len(line["trace_id"]) == 32  # the request's span, in the child's SDK
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out.join()
        steps = [json.loads(line)["message"] for line in out.lines]
        stop_steps = [
            "stopping; not ready from now on",
            "deregistered node",
            "refusing new requests; draining",
            "closed",
            "stopped",
        ]
        tail = steps[steps.index(f"{name}: signal received, stopping") :]
        for step in stop_steps:
            assert any(m.startswith(f"{name}: {step}") for m in tail), (step, tail)
        assert PASSWORD not in "\n".join(out.lines)
    finally:
        finish(proc, out)


def test_text_format_and_log_level(secret_url: str) -> None:
    name = f"quiet{uuid.uuid4().hex[:6]}"
    env = {"OBS_NAME": name, "MICROSTD_REGISTRY": secret_url}
    proc, out = run("--log-level", "warning", env=env)
    try:
        # At WARNING the start steps are not shown; wait for the node instead.
        async def registered() -> None:
            import microstd.registry

            deadline = time.monotonic() + 30
            async with microstd.registry.open(secret_url) as reg:
                while True:
                    try:
                        if await reg.lookup(name):
                            return
                    except KeyError:
                        pass
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)

        asyncio.run(registered())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out.join()
        assert out.lines == []
    finally:
        finish(proc, out)
    proc, out = run(env=env)
    try:
        line = out.wait_for("ready")
        # time LEVEL logger: message
        assert " INFO microstd.service: " in line
        assert f"{name}: registered node" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out.join()
        assert PASSWORD not in "\n".join(out.lines)
    finally:
        finish(proc, out)


def test_an_app_that_configured_logging_keeps_it(tmp_path: Path) -> None:
    app = tmp_path / "own_logging.py"
    app.write_text(
        "import logging, sys\n"
        "import microstd\n"
        "logging.basicConfig(stream=sys.stderr, format='APP %(message)s', level=logging.INFO)\n"
        "svc = microstd.Service('ownlog', registry='memory://')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "microstd", "run", "own_logging:svc", "--log-format", "json"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = Lines(proc)
    try:
        line = out.wait_for("ready")
        assert line.startswith("APP ownlog: registered node")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        finish(proc, out)
