"""Local sources: files, .env, secrets directory, environment, command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from microstd import config
from microstd.errors import ConfigError


def test_json_yaml_toml_files_load_the_same_tree(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"db": {"host": "h", "port": 1}, "tags": ["x"]}')
    (tmp_path / "a.yaml").write_text("db:\n  host: h\n  port: 1\ntags: [x]\n")
    (tmp_path / "a.toml").write_text('tags = ["x"]\n[db]\nhost = "h"\nport = 1\n')
    expected = {"db": {"host": "h", "port": 1}, "tags": ["x"]}
    for name in ("a.json", "a.yaml", "a.toml"):
        assert config.load(sources=[config.file(tmp_path / name)]).value == expected


def test_file_interpolates_variables_with_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFG_HOST", "db.internal")
    monkeypatch.delenv("CFG_PORT", raising=False)
    path = tmp_path / "app.yaml"
    path.write_text('host: "${CFG_HOST}"\nport: "${CFG_PORT:-5432}"\nlit: "$${CFG_HOST}"\n')
    assert config.load(sources=[config.file(path)]).value == {
        "host": "db.internal",
        "port": "5432",
        "lit": "${CFG_HOST}",
    }


def test_unset_variable_without_default_names_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFG_MISSING", raising=False)
    path = tmp_path / "app.json"
    path.write_text('{"db": {"url": "${CFG_MISSING}"}}')
    with pytest.raises(ConfigError, match=r"app\.json at db\.url: \$\{CFG_MISSING\} is not set"):
        config.load(sources=[config.file(path)])


def test_unknown_extension_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown configuration file type"):
        config.file(tmp_path / "app.ini")


def test_dotenv_parses_quotes_comments_export_and_nesting(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "# comment\n"
        "export APP_DB__HOST=db1  # trailing comment\n"
        "APP_NAME='single # not a comment'\n"
        'APP_MOTD="line1\\nline2"\n'
        "APP_PORT=5432\n"
        "OTHER=ignored\n"
    )
    cfg = config.load(sources=[config.dotenv(path, prefix="APP_")])
    assert cfg.value == {
        "db": {"host": "db1"},
        "name": "single # not a comment",
        "motd": "line1\nline2",
        "port": 5432,
    }


def test_dotenv_malformed_line_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n  B 2\n")
    with pytest.raises(ConfigError, match=r"\.env:2:4: .*expected '=' after B") as info:
        config.load(sources=[config.dotenv(path)])
    assert "line 2, column 4" in str(info.value)


def test_dotenv_unterminated_quote(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text('A="open\nB=2\n')
    with pytest.raises(ConfigError, match=r"\.env:1:3: .*unterminated"):
        config.load(sources=[config.dotenv(path)])


def test_secrets_dir_values_are_secret(tmp_path: Path) -> None:
    (tmp_path / "db__password").write_text("hunter2\n")
    (tmp_path / "api_key").write_text("k-123")
    (tmp_path / ".hidden").write_text("no")
    cfg = config.load(sources=[config.secrets_dir(tmp_path)])
    password = cfg.get("db.password")
    assert isinstance(password, config.Secret)
    assert password == "hunter2"
    assert password.reveal() == "hunter2"
    assert repr(password) == "'**********'"
    assert str(password) == "**********"
    assert f"{password}" == "**********"
    assert "hunter2" not in repr(cfg.value)
    assert "k-123" not in repr(cfg.value)
    assert "hunter2" not in str(cfg.explain("db.password"))
    assert ".hidden" not in cfg.value


def test_env_prefix_nesting_and_json_values_without_schema() -> None:
    environ = {
        "APP_DB__HOST": "h",
        "APP_DB__PORT": "5432",
        "APP_FLAGS": '["a", "b"]',
        "APP_DEBUG": "true",
        "APP_NAME": "svc",
        "APP_LEVEL": "{not json",
        "OTHER_X": "1",
    }
    cfg = config.load(sources=[config.env("APP_", environ=environ)])
    assert cfg.value == {
        "db": {"host": "h", "port": 5432},
        "flags": ["a", "b"],
        "debug": True,
        "name": "svc",
        "level": "{not json",
    }


def test_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSTDTEST_A__B", "x")
    assert config.load(sources=[config.env("MSTDTEST_")]).value == {"a": {"b": "x"}}


def test_args_forms() -> None:
    argv = ["run", "--db.host=x", "--db-port", "5", "--verbose", "--no-color", "-q", "--", "--z=1"]
    cfg = config.load(sources=[config.args(argv)])
    assert cfg.value == {"db": {"host": "x", "port": 5}, "verbose": True, "color": False}


def test_args_defaults_to_sys_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "--name=from-argv"])
    assert config.load(sources=[config.args()]).value == {"name": "from-argv"}


def test_mapping_is_copied(tmp_path: Path) -> None:
    defaults = {"a": {"b": 1}}
    cfg = config.load(sources=[config.mapping(defaults)])
    defaults["a"]["b"] = 2
    assert cfg.value == {"a": {"b": 1}}
    assert cfg.explain("a.b").source == "defaults"
