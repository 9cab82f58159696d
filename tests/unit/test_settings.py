"""Settings precedence and validation (defaults < TOML < VOLTARO_* < flags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voltaro.settings import SettingsError, UnknownChargers, load_settings


def test_defaults_are_the_careful_ones() -> None:
    s = load_settings(environ={})
    assert s.unknown_chargers is UnknownChargers.REJECT
    assert s.allow_missing_subprotocol is False
    assert s.max_message_size == 65536


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text('[voltaro]\nport = 9100\nhost = "127.0.0.1"\nlog_level = "debug"\n')
    env = {"VOLTARO_PORT": "9200", "VOLTARO_UNKNOWN_CHARGERS": "Pending"}
    s = load_settings(config_file=config, environ=env, overrides={"port": "9300", "host": None})
    assert s.port == 9300  # flag wins
    assert s.host == "127.0.0.1"  # TOML, no flag given
    assert s.unknown_chargers is UnknownChargers.PENDING  # env
    assert s.log_level == "DEBUG"


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text("http_port = 8181\n")
    assert load_settings(environ={"VOLTARO_CONFIG": str(config)}).http_port == 8181


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"VOLTARO_PORT": "70000"}, "port"),
        ({"VOLTARO_MAX_MESSAGE_SIZE": "10"}, "max_message_size"),
        ({"VOLTARO_ALLOW_MISSING_SUBPROTOCOL": "perhaps"}, "allow_missing_subprotocol"),
        ({"VOLTARO_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"VOLTARO_HANDSHAKE_TIMEOUT": "0"}, "handshake_timeout"),
        ({"VOLTARO_API_TOKENS": "read:short"}, "api_tokens"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=f"setting {name}"):
        load_settings(environ=env)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text("prot = 9000\n")
    with pytest.raises(SettingsError, match="setting prot: unknown setting"):
        load_settings(config_file=config, environ={})
