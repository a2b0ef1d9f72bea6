"""Merge rules and provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from microstd import config


def test_later_sources_override_and_mappings_merge_deeply() -> None:
    cfg = config.load(
        sources=[
            config.mapping({"db": {"host": "a", "port": 1}, "name": "x"}, name="base"),
            config.mapping({"db": {"host": "b"}}, name="over"),
        ]
    )
    assert cfg.value == {"db": {"host": "b", "port": 1}, "name": "x"}


def test_lists_are_replaced_by_default_and_appended_on_request() -> None:
    base = config.mapping({"tags": ["a", "b"]}, name="base")
    replaced = config.load(sources=[base, config.mapping({"tags": ["c"]}, name="o")])
    assert replaced.value["tags"] == ["c"]
    appended = config.load(
        sources=[base, config.mapping({"tags": ["c"]}, name="o", lists="append")]
    )
    assert appended.value["tags"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="lists must be"):
        config.mapping({}, lists="merge")  # type: ignore[arg-type]


def test_explicit_null_clears_a_value(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text('{"db": {"password": null}}')
    cfg = config.load(sources=[{"db": {"password": "x", "host": "h"}}, config.file(path)])
    assert cfg.value == {"db": {"host": "h"}}
    exp = cfg.explain("db.password")
    assert exp.source == f"file:{path}"
    assert exp.value is None
    assert "cleared (null)" in str(exp)


def test_a_scalar_may_replace_a_mapping_and_back() -> None:
    cfg = config.load(sources=[{"a": {"b": 1}}, {"a": 5}, {"a": {"c": 2}}])
    assert cfg.value == {"a": {"c": 2}}


def test_explain_reports_winner_value_and_overridden() -> None:
    cfg = config.load(
        sources=[
            config.mapping({"db": {"host": "localhost"}}, name="defaults"),
            config.mapping({"db": {"host": "db.staging"}}, name="staging"),
            config.env("APP_", environ={"APP_DB__HOST": "db.prod"}),
        ]
    )
    exp = cfg.explain("db.host")
    assert exp.source == "env:APP_*"
    assert exp.value == "db.prod"
    assert exp.overrode == (("defaults", "localhost"), ("staging", "db.staging"))
    text = str(exp)
    assert "db.prod" in text
    assert "env:APP_*" in text
    assert "'localhost' from defaults" in text
    assert "'db.staging' from staging" in text


def test_explain_of_unset_path_and_of_a_mapping() -> None:
    cfg = config.load(sources=[config.mapping({"db": {"host": "h"}}, name="d")])
    missing = cfg.explain("nope")
    assert missing.source is None
    assert "not set" in str(missing)
    node = cfg.explain("db")
    assert node.source == "d"
    assert node.value == {"host": "h"}


def test_get_with_default_and_missing() -> None:
    cfg = config.load(sources=[{"a": {"b": [10, 20]}}])
    assert cfg.get("a.b") == [10, 20]
    assert cfg.get("a.b.1") == 20
    assert cfg.get("a.x", 7) == 7
    with pytest.raises(KeyError):
        cfg.get("a.x")


def test_secret_keys_are_masked_wherever_they_come_from() -> None:
    cfg = config.load(
        sources=[
            config.mapping({"db": {"password": "p1"}}, name="defaults"),
            config.env("APP_", environ={"APP_DB__PASSWORD": "p2"}),
        ],
        secret_keys=["db.password"],
    )
    assert cfg.get("db.password") == "p2"
    assert "p2" not in repr(cfg.value)
    text = str(cfg.explain("db.password")) + repr(cfg.explain("db.password"))
    assert "p1" not in text
    assert "p2" not in text
    assert "**********" in text


def test_secret_keys_may_name_a_subtree() -> None:
    cfg = config.load(
        sources=[{"db": {"user": "u1", "password": "p1"}, "x": "y"}], secret_keys=["db"]
    )
    assert isinstance(cfg.get("db.user"), config.Secret)
    assert isinstance(cfg.get("db.password"), config.Secret)
    assert not isinstance(cfg.get("x"), config.Secret)
    assert "u1" not in repr(cfg.value)
    assert "p1" not in str(cfg.explain("db.password"))
