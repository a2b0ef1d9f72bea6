"""The `microstd` subcommands against a service in another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from _procs import spawn, stop, wait_registered


def microstd(
    *args: str, registry: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if registry:
        env["MICROSTD_REGISTRY"] = registry
    return subprocess.run(
        [sys.executable, "-m", "microstd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        input=stdin,
    )


@pytest.fixture
async def running(redis_url: str) -> Iterator[str]:  # type: ignore[misc]
    name = f"cli{uuid.uuid4().hex[:8]}"
    proc = spawn(name, redis_url)
    try:
        await wait_registered(redis_url, name, proc)
        yield name
    finally:
        stop(proc)


async def test_call_services_and_exit_codes(redis_url: str, running: str) -> None:
    ok = microstd("call", running, "Proc.Slow", '{"seconds": 0, "n": 7}', registry=redis_url)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["n"] == 7

    failed = microstd("call", running, "Proc.Fail", "{}", "--registry", redis_url)
    assert failed.returncode == 1
    error = json.loads(failed.stderr)
    assert (error["code"], error["status"]) == (500, "Internal Server Error")

    missing = microstd("call", "nobody", "X.Y", "{}", registry=redis_url)
    assert missing.returncode == 3
    assert "nobody" in missing.stderr

    bad = microstd("call", running, "Proc.Slow", "{oops", registry=redis_url)
    assert bad.returncode == 2
    assert "JSON" in bad.stderr

    slow = microstd(
        "call", running, "Proc.Slow", '{"seconds": 5}', "--timeout", "0.3", registry=redis_url
    )
    assert slow.returncode == 4

    listed = microstd("services", "--json", registry=redis_url)
    assert listed.returncode == 0
    [entry] = [s for s in json.loads(listed.stdout) if s["name"] == running]
    assert "Proc.Whoami" in entry["endpoints"]
    assert len(entry["nodes"]) == 1

    text = microstd("services", registry=redis_url)
    assert running in text.stdout


async def test_call_timeout_zero_is_an_expired_deadline(redis_url: str, running: str) -> None:
    # Like any expired deadline: exit 4 and the deadline message, not the
    # server's 504 reply to a request sent with no time left.
    expired = microstd(
        "call", running, "Proc.Slow", '{"seconds": 0}', "--timeout", "0", registry=redis_url
    )
    assert expired.returncode == 4, expired.stderr
    assert expired.stderr.strip() == f"microstd call: {running} Proc.Slow: no reply within 0s"
    negative = microstd("call", running, "Proc.Slow", "{}", "--timeout", "-1", registry=redis_url)
    assert negative.returncode == 2
    assert "--timeout must be >= 0" in negative.stderr


@pytest.mark.parametrize("command", ["services", "call", "publish", "run"])
def test_help(command: str) -> None:
    result = microstd(command, "--help")
    assert result.returncode == 0
    assert "usage: microstd" in result.stdout


def test_run_rejects_bad_targets() -> None:
    result = microstd("run", "no_such_module_here:svc")
    assert result.returncode == 2
    assert "cannot load" in result.stderr
    result = microstd("run", "json:__name__")
    assert result.returncode == 2
    assert "not a microstd.Service" in result.stderr
    result = microstd("run", "nocolon")
    assert result.returncode == 2


def test_unknown_registry_scheme() -> None:
    result = microstd("services", "--registry", "zookeeper://x")
    assert result.returncode == 2
    assert "no registry backend" in result.stderr


async def test_call_stream_prints_each_reply_as_a_line(redis_url: str, running: str) -> None:
    out = microstd("call", running, "Proc.Count", '{"n": 3}', "--stream", registry=redis_url)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [{"n": 0}, {"n": 1}, {"n": 2}]

    failed = microstd(
        "call", running, "Proc.Count", '{"n": 2, "fail": 1}', "--stream", registry=redis_url
    )
    assert failed.returncode == 1
    assert [json.loads(line) for line in failed.stdout.splitlines()] == [{"n": 0}, {"n": 1}]
    assert json.loads(failed.stderr)["code"] == 409

    lines = "".join(json.dumps({"x": x}) + "\n" for x in (1, 2, 3))
    summed = microstd("call", running, "Proc.Sum", "-", "--stream", registry=redis_url, stdin=lines)
    assert summed.returncode == 0, summed.stderr
    assert summed.stdout.split() == ["1", "3", "6"]
