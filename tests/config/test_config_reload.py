"""Hot reload: file watching, validation before swap, callbacks, debouncing, readers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from microstd import config
from microstd.errors import ConfigError


@dataclass
class Settings:
    port: int
    name: str = "svc"


class _Collector:
    """Iterates `cfg.watch()` in a task so a test can wait for changes without cancelling it."""

    def __init__(self, cfg: config.Config) -> None:
        self.queue: asyncio.Queue[config.Change] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(cfg))

    async def _run(self, cfg: config.Config) -> None:
        async for change in cfg.watch(debounce=0.02):
            self.queue.put_nowait(change)

    async def next(self, poke: Callable[[], None], tries: int = 40) -> config.Change:
        # The watcher may start after the first write: keep writing until it reports.
        for _ in range(tries):
            poke()
            try:
                return await asyncio.wait_for(self.queue.get(), 0.5)
            except asyncio.TimeoutError:
                continue
        raise AssertionError("no change reported")

    async def close(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


async def test_file_change_is_validated_swapped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text('{"port": 1}')
    cfg = config.load(Settings, sources=[config.file(path)])
    seen: list[tuple[Any, Any]] = []
    cfg.on_change("port", lambda old, new: seen.append((old, new)))
    cfg.on_change("name", lambda old, new: seen.append(("name", new)))
    errors: list[ConfigError] = []
    cfg.on_error(errors.append)
    watcher = _Collector(cfg)
    try:
        change = await watcher.next(lambda: path.write_text('{"port": 2}'))
        assert change.paths == ("port",)
        assert change.old == Settings(1)
        assert change.new == Settings(2)
        assert cfg.value == Settings(2)
        assert seen == [(1, 2)]

        # A broken file keeps the last good value and goes to the error hook.
        def break_it() -> None:
            path.write_text('{"port": ')

        for _ in range(40):
            break_it()
            await asyncio.sleep(0.1)
            if errors:
                break
        assert errors
        assert str(path) in str(errors[0])
        assert cfg.value == Settings(2)

        # A file that parses but does not validate is refused the same way.
        errors.clear()
        for _ in range(40):
            path.write_text('{"port": "not a number"}')
            await asyncio.sleep(0.1)
            if errors:
                break
        assert "port: expected int" in str(errors[0])
        assert cfg.value == Settings(2)

        change = await watcher.next(lambda: path.write_text('{"port": 3}'))
        assert cfg.value == Settings(3)
        assert seen[-1] == (2, 3)
    finally:
        await watcher.close()


class CountingSource(config.Source):
    """A source whose content changes on every fetch and that signals bursts of changes."""

    def __init__(self, bursts: int = 0) -> None:
        super().__init__("counter")
        self.fetches = 0
        self.bursts = bursts
        self.lock = threading.Lock()

    async def fetch(self) -> dict[str, Any]:
        with self.lock:
            self.fetches += 1
            n = self.fetches
        return {"a": n, "b": n, "nested": {"c": n}}

    async def _burst(self) -> AsyncIterator[None]:
        for _ in range(self.bursts):
            yield None
        await asyncio.Event().wait()

    def changes(self) -> AsyncIterator[None]:
        return self._burst()


async def test_bursts_are_debounced_into_one_reload() -> None:
    source = CountingSource(bursts=10)
    cfg = await config.load_async(sources=[source])
    changes = cfg.watch(debounce=0.2)
    change = await anext(changes)
    await changes.aclose()
    assert source.fetches == 2  # the initial load and one reload for the whole burst
    assert set(change.paths) == {"a", "b", "nested.c"}
    assert cfg.value == {"a": 2, "b": 2, "nested": {"c": 2}}


async def test_async_callbacks_and_failing_callbacks() -> None:
    source = CountingSource()
    cfg = await config.load_async(sources=[source])
    got: list[Any] = []

    async def on_a(old: Any, new: Any) -> None:
        got.append((old, new))

    def boom(old: Any, new: Any) -> None:
        raise RuntimeError("bug in callback")

    errors: list[ConfigError] = []
    cfg.on_error(errors.append)
    cfg.on_change("a", on_a)
    remove = cfg.on_change("nested", boom)
    await cfg.reload()
    assert got == [(1, 2)]
    assert "on_change callback for nested raised RuntimeError" in str(errors[0])
    remove()
    await cfg.reload()
    assert len(errors) == 1
    assert got[-1] == (2, 3)


def test_readers_never_see_a_half_applied_reload() -> None:
    source = CountingSource()
    cfg = config.load(sources=[{"x": 0}, source])
    stop = threading.Event()
    torn: list[Any] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            value = cfg.value
            if not (value["a"] == value["b"] == value["nested"]["c"]):
                torn.append(value)
            if cfg.get("a") > cfg.get("b") + 10_000:
                torn.append("get")
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()

    async def reload_many() -> None:
        for _ in range(300):
            await cfg.reload()

    try:
        asyncio.run(reload_many())
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert torn == []
    assert reads[0] > 0
    assert cfg.value["a"] == 301


async def test_failed_reload_of_required_source_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"port": 1}))
    cfg = config.load(Settings, sources=[config.file(path)])
    errors: list[ConfigError] = []
    cfg.on_error(errors.append)
    path.unlink()
    assert await cfg.reload() is None
    assert "no such file" in str(errors[0])
    assert cfg.value == Settings(1)


def test_secret_values_stay_out_of_reload_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "port").write_text("supersecret")
    with pytest.raises(ConfigError) as info:
        config.load(Settings, sources=[config.secrets_dir(tmp_path)])
    assert "supersecret" not in str(info.value)
    cfg = config.load(Settings, sources=[{"port": 1}])
    (tmp_path / "port").write_text("9")
    cfg2 = config.load(Settings, sources=[{"port": 1}, config.secrets_dir(tmp_path)])
    assert cfg2.value.port == 9
    (tmp_path / "port").write_text("supersecret2")
    with caplog.at_level("INFO", logger="microstd.config"):
        asyncio.run(cfg2.reload())
    assert "supersecret2" not in caplog.text
    assert "port" in caplog.text
    assert cfg.value.port == 1


class FlakyRemote(config.Source):
    """A remote source that works, then fails: like a server that went away."""

    def __init__(self, *, optional: bool) -> None:
        super().__init__("flaky", optional=optional)
        self.fail: BaseException | None = None

    async def fetch(self) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        return {"port": 2}


async def test_optional_remote_that_fails_on_reload_keeps_its_last_layer() -> None:
    source = FlakyRemote(optional=True)
    cfg = await config.load_async(Settings, sources=[{"port": 1}, source])
    errors: list[ConfigError] = []
    cfg.on_error(errors.append)
    source.fail = RuntimeError("connection reset")
    assert await cfg.reload() is None
    assert cfg.value == Settings(2)
    assert "flaky: RuntimeError: connection reset" in str(errors[0])


async def test_required_remote_that_raises_anything_is_reported_not_raised() -> None:
    source = FlakyRemote(optional=False)
    cfg = await config.load_async(Settings, sources=[source])
    errors: list[ConfigError] = []
    cfg.on_error(errors.append)
    source.fail = KeyError("bug")
    assert await cfg.reload() is None
    assert cfg.value == Settings(2)
    assert "flaky: KeyError" in str(errors[0])


@dataclass
class Picky:
    port: int

    def __post_init__(self) -> None:
        if self.port == 3:
            raise LookupError("port 3 is cursed")


class Stepping(config.Source):
    def __init__(self) -> None:
        super().__init__("stepping")
        self.port = 1

    async def fetch(self) -> dict[str, Any]:
        return {"port": self.port}


async def test_schema_code_raising_anything_keeps_last_good() -> None:
    source = Stepping()
    cfg = await config.load_async(Picky, sources=[source])
    errors: list[ConfigError] = []
    cfg.on_error(errors.append)
    source.port = 3
    assert await cfg.reload() is None
    assert cfg.value == Picky(1)
    assert "validation raised LookupError" in str(errors[0])
    source.port = 4
    change = await cfg.reload()
    assert change is not None
    assert cfg.value == Picky(4)
