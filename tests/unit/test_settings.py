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


POLICY_TOML = 'load_policy = "Priority"\nload_min_amps = 8\n'
SITE_TOML = """
[[circuits]]
name = "site"
limit_amps = 63

[[circuits]]
name = "feeder-a"
parent = "site"
limit_amps = 32
limit_kw = 22

[[circuits.chargers]]
id = "CP-1"
phases = "L1=L2,L2=L3,L3=L1"
max_amps = 16
fallback_amps = 8
priority = 1

[[circuits.chargers]]
id = "CP-2"
phases = "L1=L3"
"""


@pytest.mark.parametrize("header", ["", "[voltaro]\nport = 9100\n"])
def test_circuits_from_the_settings_file(tmp_path: Path, header: str) -> None:
    from voltaro.domain.circuits import ChargerWiring, Circuit, Phase
    from voltaro.domain.load_allocation import PolicyMode

    config = tmp_path / "v.toml"
    # With a [voltaro] table the [[circuits]] tables sit next to it at the top level.
    config.write_text(header + POLICY_TOML + SITE_TOML)
    s = load_settings(config_file=config, environ={})
    assert s.load_policy is PolicyMode.PRIORITY
    assert s.load_min_amps == 8.0
    assert s.circuits.circuits == (
        Circuit(circuit_id="site", limit_amps=63.0),
        Circuit(circuit_id="feeder-a", parent="site", limit_amps=32.0, limit_kw=22.0),
    )
    assert s.circuits.chargers == (
        ChargerWiring(
            charger_id="CP-1",
            circuit_id="feeder-a",
            phases=(Phase.L2, Phase.L3, Phase.L1),
            max_amps=16.0,
            fallback_amps=8.0,
            priority=1,
        ),
        ChargerWiring(charger_id="CP-2", circuit_id="feeder-a", phases=(Phase.L3,)),
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[circuits]]\nname = "a"\n', "circuit a needs a limit"),
        ('[[circuits]]\nname = "a"\nparent = "b"\nlimit_amps = 5\n', "parent b is not a circuit"),
        ('[[circuits]]\nname = "a"\nlimit_amps = "lots"\n', "limit_amps must be a number"),
        ('[[circuits]]\nname = "a"\nlimit_amps = 5\nfuse = 1\n', "unknown key fuse"),
        ("[[circuits]]\nlimit_amps = 5\n", "needs a name"),
        (
            '[[circuits]]\nname = "a"\nlimit_amps = 5\n[[circuits.chargers]]\nid = "X"\n'
            'phases = "L1=L4"\n',
            "'L4' is not L1, L2 or L3",
        ),
        (
            '[[circuits]]\nname = "a"\nlimit_amps = 5\n[[circuits.chargers]]\nid = "X"\n'
            "max_amps = 10\nfallback_amps = 12\n",
            "charger X: fallback limit",
        ),
        ('load_policy = "loudest"\n', "setting load_policy"),
    ],
)
def test_bad_circuits_in_the_settings_file_name_the_problem(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "v.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings(config_file=config, environ={})
    assert str(config) in str(caught.value)


def test_circuits_cannot_come_from_an_environment_variable() -> None:
    with pytest.raises(SettingsError, match="set circuits in the TOML file"):
        load_settings(environ={"VOLTARO_CIRCUITS": "site=63"})
