"""Bad input: malformed files name the file, line and column; optional sources."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from microstd import config
from microstd.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "text", "line", "column"),
    [
        ("bad.json", '{\n  "a": 1,\n  "b": ,\n}', 3, 8),
        ("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n", 3, 2),
        ("bad.toml", 'a = 1\nb = "x\n', 2, 7),
    ],
)
def test_malformed_file_names_file_line_and_column(
    tmp_path: Path, name: str, text: str, line: int, column: int
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(sources=[config.file(path)])
    message = str(info.value)
    assert str(path) in message
    assert f"line {line}, column {column}" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        config.load(sources=[config.file(path)])


def test_missing_required_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load(sources=[config.file(tmp_path / "none.toml")])


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(sources=[config.file(path)])


def test_optional_source_that_fails_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with caplog.at_level(logging.WARNING, logger="microstd.config"):
        cfg = config.load(
            sources=[
                {"a": 1},
                config.file(tmp_path / "missing.yaml", optional=True),
                config.file(broken, optional=True),
            ]
        )
    assert cfg.value == {"a": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert any("missing.yaml" in m and "skipped" in m for m in messages)
    assert any("broken.json" in m for m in messages)


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError):
        config.load(sources=[config.file(path)])


def test_bad_source_type() -> None:
    with pytest.raises(TypeError, match="configuration source"):
        config.load(sources=[42])  # type: ignore[list-item]


def test_utf8_bom_is_not_content(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert config.load(sources=[config.file(path)]).value == {"a": 1}


def test_a_source_raising_anything_becomes_a_config_error() -> None:
    class Broken(config.Source):
        local = True

        def read(self) -> dict[str, object]:
            raise RuntimeError("boom")

    with pytest.raises(ConfigError, match="broken: RuntimeError: boom"):
        config.load(sources=[Broken("broken")])
    assert config.load(sources=[{"a": 1}, Broken("broken", optional=True)]).value == {"a": 1}


def test_yaml_without_pyyaml_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    path = tmp_path / "a.yaml"
    path.write_text("a: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ConfigError, match=r"YAML support needs PyYAML"):
        config.load(sources=[config.file(path)])
