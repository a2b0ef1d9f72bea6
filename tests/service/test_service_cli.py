"""The `microstd` subcommands against a service in another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

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


def _without_urls() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("MICROSTD_REGISTRY", "MICROSTD_BROKER", "MICROSTD_TRANSPORT")
    }


def bare_microstd(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "microstd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        input=stdin,
    )


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (["services"], ["MICROSTD_REGISTRY", "--registry"]),
        (["call", "greeter", "Greeter.Hello", "{}"], ["MICROSTD_REGISTRY", "--transport"]),
        (["publish", "orders.created", "{}"], ["MICROSTD_BROKER", "--broker"]),
    ],
)
def test_without_urls_the_commands_say_where_to_point(command: list[str], names: list[str]) -> None:
    out = bare_microstd(*command, env=_without_urls())
    assert out.returncode == 2, out.stderr
    assert "fresh process" in out.stderr
    assert "memory://default" in out.stderr
    for name in names:
        assert name in out.stderr
    assert out.stdout == ""


async def test_env_urls_are_read_when_no_flag_is_given(redis_url: str, running: str) -> None:
    env = {**_without_urls(), "MICROSTD_REGISTRY": redis_url, "MICROSTD_BROKER": redis_url}
    listed = bare_microstd("services", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert running in [s["name"] for s in json.loads(listed.stdout)]
    called = bare_microstd("call", running, "Proc.Slow", '{"seconds": 0, "n": 1}', env=env)
    assert called.returncode == 0, called.stderr
    published = bare_microstd("publish", "cli.test", '{"a": 1}', env=env)
    assert published.returncode == 0, published.stderr


def test_an_explicit_memory_registry_is_answered_with_a_hint() -> None:
    out = bare_microstd("services", "--registry", "memory://default", env=_without_urls())
    assert out.returncode == 0
    assert "no services registered in memory://default" in out.stdout
    assert "one process" in out.stderr


def test_call_over_nats_needs_no_registry(nats_url: str) -> None:
    from microstd._loopthread import LoopThread

    name = f"natscli{uuid.uuid4().hex[:8]}"
    svc = microstd_service(name, nats_url)
    loop = LoopThread("cli-nats-service")
    loop.run(svc.start())
    try:
        env = {**_without_urls(), "MICROSTD_TRANSPORT": nats_url}
        out = bare_microstd("call", name, "Nats.Echo", '{"x": 1}', env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"x": 1}
        flag = bare_microstd(
            "call", name, "Nats.Echo", "[2]", "--transport", nats_url, env=_without_urls()
        )
        assert json.loads(flag.stdout) == [2]
        missing = bare_microstd("call", "nobody-" + name, "X.Y", env=env)
        assert missing.returncode == 3
        assert "no instance serving on NATS" in missing.stderr
    finally:
        loop.run(svc.stop())
        loop.stop()


def test_call_stream_over_nats(nats_url: str) -> None:
    from microstd._loopthread import LoopThread

    name = f"natscli{uuid.uuid4().hex[:8]}"
    svc = microstd_service(name, nats_url)
    loop = LoopThread("cli-nats-stream-service")
    loop.run(svc.start())
    try:
        env = {**_without_urls(), "MICROSTD_TRANSPORT": nats_url}
        out = bare_microstd("call", name, "Nats.Count", '{"n": 3}', "--stream", env=env)
        assert out.returncode == 0, out.stderr
        assert [json.loads(line) for line in out.stdout.splitlines()] == [0, 1, 2]

        failed = bare_microstd(
            "call", name, "Nats.Count", '{"n": 2, "fail": 1}', "--stream", env=env
        )
        assert failed.returncode == 1
        assert failed.stdout.split() == ["0", "1"]
        assert json.loads(failed.stderr)["code"] == 409

        lines = "".join(json.dumps(x) + "\n" for x in (1, 2, 3))
        args = ["call", name, "Nats.Running", "-", "--stream", "--transport", nats_url]
        summed = bare_microstd(*args, env=_without_urls(), stdin=lines)
        assert summed.returncode == 0, summed.stderr
        assert summed.stdout.split() == ["1", "3", "6"]
    finally:
        loop.run(svc.stop())
        loop.stop()


def microstd_service(name: str, nats_url: str) -> Any:
    import microstd as lib

    svc = lib.Service(name, registry="memory://", transport=nats_url)

    @svc.handler("Nats.Echo")
    async def echo(req: object) -> object:
        return req

    @svc.handler("Nats.Count")
    async def count(req: dict[str, int]) -> AsyncIterator[int]:
        for n in range(req["n"]):
            yield n
        if req.get("fail"):
            raise lib.errors.conflict("counted too far")

    @svc.handler("Nats.Running")
    async def running(reqs: AsyncIterator[int]) -> AsyncIterator[int]:
        total = 0
        async for x in reqs:
            total += x
            yield total

    return svc
