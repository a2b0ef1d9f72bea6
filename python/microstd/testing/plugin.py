"""The pytest plugin: `pytest --microstd-store=URL` runs the store conformance suite
on the backend URL names (likewise `--microstd-broker`, `--microstd-sync`,
`--microstd-registry`).

Installed with microstd (the `pytest11` entry point), it does nothing unless
one of its options is given. Then it adds that area's suites to the run and
provides the area's target fixture from the URL; `{unique}` in the URL becomes
a fresh id for each test, so each test gets an empty instance (`dict://{unique}`,
`redis://127.0.0.1:6379/15?prefix={unique}:`). Every handle a test opens uses
the same URL, so a URL without `{unique}` must name one shared instance.

A backend that cannot watch passes `--microstd-without=watch`; locks that do
not serve waiters first come, first served pass `--microstd-without=fifo`;
`--microstd-short-ttl=2` for locks whose shortest reliable lease is 2 s. A
conftest can instead define the target fixture itself (see
`microstd.testing.targets`) for a backend that needs more than a URL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from microstd.testing.targets import BrokerTarget, RegistryTarget, StoreTarget, SyncTarget

__all__ = ["SUITES"]

_SUITES_DIR = Path(__file__).parent / "suites"

#: The areas with a suite: each is a package of test modules under `suites/`.
SUITES = ("store", "broker", "sync", "registry")

_WITHOUT = ("watch", "fifo")
_WANTED = pytest.StashKey[frozenset[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("microstd", "microstd conformance suites")
    for area in SUITES:
        group.addoption(
            f"--microstd-{area}",
            metavar="URL",
            default=None,
            help=f"run microstd's {area} conformance suite on the backend URL names",
        )
    group.addoption(
        "--microstd-without",
        metavar="FEATURES",
        default="",
        help=f"comma-separated features the backend lacks: {', '.join(_WITHOUT)}",
    )
    group.addoption(
        "--microstd-short-ttl",
        metavar="SECONDS",
        type=float,
        default=0.3,
        help="shortest lease the lock backend keeps to the second (default 0.3)",
    )


def pytest_configure(config: pytest.Config) -> None:
    urls = {area: config.getoption(f"--microstd-{area}") for area in SUITES}
    wanted = {area: url for area, url in urls.items() if url}
    if not wanted:
        return
    without = {f.strip() for f in str(config.getoption("--microstd-without")).split(",") if f}
    unknown = without - set(_WITHOUT)
    if unknown:
        raise pytest.UsageError(
            f"--microstd-without: unknown feature(s) {', '.join(sorted(unknown))};"
            f" known: {', '.join(_WITHOUT)}"
        )
    short_ttl = float(config.getoption("--microstd-short-ttl"))
    if not config.pluginmanager.has_plugin("microstd.testing.fixtures"):
        try:
            config.pluginmanager.import_plugin("microstd.testing.fixtures")
        except ImportError as exc:
            raise pytest.UsageError(
                f"microstd's conformance suites need pytest-asyncio ({exc}):"
                " pip install 'microstd[testing]'"
            ) from exc
    config.pluginmanager.register(_Targets(wanted, without, short_ttl), "microstd-targets")
    config.stash[_WANTED] = frozenset(wanted)
    # The suites directory is an initial path, so test ids read "store/contract.py::test_..."
    # wherever microstd is installed; pytest_collect_file picks the wanted areas' modules.
    config.args.append(str(_SUITES_DIR))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """The suite modules of the areas named on the command line (their names do not
    match `python_files`, so pytest's own collection leaves them alone)."""
    wanted = parent.config.stash.get(_WANTED, frozenset())
    if not wanted or file_path.suffix != ".py" or file_path.name.startswith("_"):
        return None
    try:
        area = file_path.relative_to(_SUITES_DIR).parts[0]
    except ValueError:
        return None
    if area not in wanted:
        return None
    module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
    return module


class _Targets:
    """The target fixtures of the areas named on the command line."""

    def __init__(self, urls: dict[str, str], without: set[str], short_ttl: float) -> None:
        self.urls = urls
        self.without = without
        self.short_ttl = short_ttl

    def _url(self, area: str) -> str:
        url = self.urls.get(area)
        if url is None:
            raise pytest.UsageError(f"this test needs --microstd-{area}=URL")
        return url

    @pytest.fixture
    def store_target(self) -> StoreTarget:
        return StoreTarget.from_url(self._url("store"), watch="watch" not in self.without)

    @pytest.fixture
    def broker_target(self) -> BrokerTarget:
        return BrokerTarget.from_url(self._url("broker"))

    @pytest.fixture
    def sync_target(self) -> SyncTarget:
        return SyncTarget.from_url(
            self._url("sync"), short_ttl=self.short_ttl, fifo="fifo" not in self.without
        )

    @pytest.fixture
    def registry_target(self) -> RegistryTarget:
        return RegistryTarget.from_url(self._url("registry"))
