"""Typed binding: dataclasses, pydantic, durations, and the errors of a mismatch."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import pydantic
import pytest

from microstd import config
from microstd.config import parse_duration
from microstd.errors import ConfigError


class Level(enum.Enum):
    DEBUG = "debug"
    INFO = "info"


@dataclass
class DB:
    host: str
    port: int = 5432
    timeout: timedelta = timedelta(seconds=5)
    password: config.Secret | None = None


@dataclass
class App:
    db: DB
    debug: bool = False
    level: Level = Level.INFO
    tags: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    started: datetime | None = None
    day: date | None = None
    mode: Literal["fast", "safe"] = "safe"
    ratio: float = 1.0
    home: Path | None = None


def test_dataclass_binding_coerces_text_values() -> None:
    environ = {
        "APP_DB__HOST": "h",
        "APP_DB__PORT": "6000",
        "APP_DB__TIMEOUT": "250ms",
        "APP_DB__PASSWORD": "pw",
        "APP_DEBUG": "yes",
        "APP_LEVEL": "DEBUG",
        "APP_TAGS": "a, b",
        "APP_LIMITS": '{"x": "3"}',
        "APP_STARTED": "2024-05-01T10:00:00Z",
        "APP_DAY": "2024-05-02",
        "APP_MODE": "fast",
        "APP_RATIO": "0.5",
        "APP_HOME": "/srv",
    }
    value = config.load(App, sources=[config.env("APP_", environ=environ)]).value
    assert value == App(
        db=DB("h", 6000, timedelta(milliseconds=250), config.Secret("pw")),
        debug=True,
        level=Level.DEBUG,
        tags=["a", "b"],
        limits={"x": 3},
        started=datetime(2024, 5, 1, 10, tzinfo=timezone.utc),
        day=date(2024, 5, 2),
        mode="fast",
        ratio=0.5,
        home=Path("/srv"),
    )
    assert isinstance(value.db.password, config.Secret)
    assert "pw'" not in repr(value)


def test_defaults_and_optional_fields() -> None:
    cfg = config.load(App, sources=[{"db": {"host": "h"}}])
    assert cfg.value == App(db=DB("h"))
    exp = cfg.explain("db.port")
    assert (exp.source, exp.value) == ("schema default", 5432)
    assert str(exp) == "db.port = 5432 from schema default"
    assert cfg.explain("nothing").source is None


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"db\.host: required \(str\) but no source set it"):
        config.load(App, sources=[{"db": {}}])


def test_type_mismatch_names_key_source_expected_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(
            App,
            sources=[
                {"db": {"host": "h"}},
                config.env("APP_", environ={"APP_DB__PORT": "eighty", "APP_LEVEL": "loud"}),
            ],
        )
    text = str(info.value)
    assert "2 configuration errors" in text
    assert "db.port: expected int, got 'eighty' (str) from env:APP_*" in text
    assert "level: expected Level, got 'loud' (str) from env:APP_*" in text


def test_mismatch_of_a_secret_never_shows_the_value(tmp_path: Path) -> None:
    @dataclass
    class S:
        token: int

    (tmp_path / "token").write_text("s3cr3t-value")
    with pytest.raises(ConfigError) as info:
        config.load(S, sources=[config.secrets_dir(tmp_path)])
    assert "s3cr3t-value" not in str(info.value)
    assert "**********" in str(info.value)
    assert info.value.__cause__ is None


def test_post_init_validation_is_reported() -> None:
    @dataclass
    class P:
        port: int

        def __post_init__(self) -> None:
            if not 0 < self.port < 65536:
                raise ValueError("port out of range")

    with pytest.raises(ConfigError, match="port out of range"):
        config.load(P, sources=[{"port": 70000}])


def test_no_schema_gives_a_plain_dict() -> None:
    assert config.load(sources=[{"a": 1}]).value == {"a": 1}


@dataclass
class Inner:
    host: str = ""


@dataclass
class Opts:
    db: Inner = field(default_factory=Inner)
    max_connections: int = 1
    dry_run: bool = False


def test_args_dashes_resolve_against_the_schema() -> None:
    argv = ["--db-host", "x", "--max-connections=9", "--dry-run"]
    value = config.load(Opts, sources=[config.args(argv)]).value
    assert value == Opts(Inner("x"), 9, True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5s", timedelta(seconds=5)),
        ("250ms", timedelta(milliseconds=250)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5d", timedelta(days=1.5)),
        ("-2m", timedelta(minutes=-2)),
        ("10", timedelta(seconds=10)),
        ("100us", timedelta(microseconds=100)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "s", "5 x", "1h-5m", "5ss", "9" * 80 + "s"])
def test_bad_durations(text: str) -> None:
    if text == "5":
        assert parse_duration(text) == timedelta(seconds=5)
        return
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


class PDB(pydantic.BaseModel):
    host: str
    port: int = 5432
    timeout: timedelta = timedelta(seconds=1)


class PApp(pydantic.BaseModel):
    db: PDB
    tags: list[str] = []
    password: pydantic.SecretStr | None = None


def test_pydantic_model_binding() -> None:
    environ = {
        "APP_DB__HOST": "h",
        "APP_DB__PORT": "7",
        "APP_DB__TIMEOUT": "2s",
        "APP_TAGS": "a,b",
    }
    value = config.load(PApp, sources=[config.env("APP_", environ=environ)]).value
    assert value == PApp(db=PDB(host="h", port=7, timeout=timedelta(seconds=2)), tags=["a", "b"])


def test_pydantic_errors_name_key_and_source_and_hide_secrets(tmp_path: Path) -> None:
    class S(pydantic.BaseModel):
        port: int
        key: int

    (tmp_path / "key").write_text("topsecret")
    with pytest.raises(ConfigError) as info:
        config.load(S, sources=[{"port": "x"}, config.secrets_dir(tmp_path)])
    text = str(info.value)
    assert "port:" in text
    assert "from defaults" in text
    assert "key:" in text
    assert "topsecret" not in text
    assert info.value.__cause__ is None


def test_pydantic_secretstr_from_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("pw")
    value = config.load(PApp, sources=[{"db": {"host": "h"}}, config.secrets_dir(tmp_path)]).value
    assert value.password is not None
    assert value.password.get_secret_value() == "pw"
    assert "pw" not in repr(value)
