"""Settings read from the environment fail loudly; bad combinations are reported by checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from gateway.checks import gateway_settings_check
from gateway.env import env_bool, env_choice, env_float, env_int, env_list, env_str
from gateway.settings import BASE_DIR


def ids(problems: list) -> set[str]:
    return {problem.id for problem in problems}


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (lambda: env_int("GW_TEST", 1), "ten"),
        (lambda: env_int("GW_TEST", 1, minimum=5), "4"),
        (lambda: env_float("GW_TEST", 1.0), "fast"),
        (lambda: env_bool("GW_TEST", False), "maybe"),
        (lambda: env_choice("GW_TEST", "a", {"a", "b"}), "c"),
    ],
)
def test_malformed_environment_value_stops_start_up(monkeypatch, reader, value):
    monkeypatch.setenv("GW_TEST", value)
    with pytest.raises(ImproperlyConfigured, match="GW_TEST"):
        reader()


def test_environment_values_are_parsed(monkeypatch):
    monkeypatch.setenv("GW_INT", " 42 ")
    monkeypatch.setenv("GW_BOOL", "yes")
    monkeypatch.setenv("GW_LIST", "a, b,,c")
    assert env_int("GW_INT", 1) == 42
    assert env_bool("GW_BOOL", False) is True
    assert env_list("GW_LIST") == ["a", "b", "c"]
    assert env_int("GW_UNSET", 7) == 7


@pytest.mark.parametrize(
    ("reader", "value", "expects"),
    [
        (lambda: env_int("GW_TEST", 1), "ten", "GW_TEST must be an integer, got 'ten'"),
        (lambda: env_int("GW_TEST", 1, minimum=5), "4", "GW_TEST must be at least 5, got 4"),
        (lambda: env_int("GW_TEST", 1, maximum=9), "10", "GW_TEST must be at most 9, got 10"),
        (lambda: env_float("GW_TEST", 1.0), "nan", "GW_TEST must be a finite number"),
        (lambda: env_float("GW_TEST", 1.0, minimum=0.5), "0.1", "GW_TEST must be at least 0.5"),
        (lambda: env_bool("GW_TEST", False), "maybe", "GW_TEST must be a boolean (true/false)"),
        (lambda: env_choice("GW_TEST", "a", {"a", "b"}), "c", "GW_TEST must be one of ['a', 'b']"),
    ],
)
def test_a_malformed_value_is_named_with_what_it_expects(monkeypatch, reader, value, expects):
    monkeypatch.setenv("GW_TEST", value)
    with pytest.raises(ImproperlyConfigured) as raised:
        reader()
    assert str(raised.value).startswith(expects)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(spelling, True) for spelling in ("1", "true", "yes", "on", "TRUE")],
        *[(spelling, False) for spelling in ("0", "false", "no", "off", "Off")],
    ],
)
def test_booleans_take_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("GW_TEST", value)
    assert env_bool("GW_TEST", not expected) is expected


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_value_counts_as_unset(monkeypatch, value):
    # Compose passes NAME= for a variable left out of .env.
    monkeypatch.setenv("GW_TEST", value)
    monkeypatch.delenv("GW_TEST_FILE", raising=False)
    assert env_int("GW_TEST", 7) == 7
    assert env_bool("GW_TEST", True) is True
    assert env_str("GW_TEST", "fallback") == "fallback"
    assert env_list("GW_TEST", ["x"]) == ["x"]


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_an_integer_within_its_bounds_is_read_and_one_outside_them_is_refused(number):
    os.environ["GW_PROPERTY"] = str(number)
    try:
        if 1 <= number <= 65535:
            assert env_int("GW_PROPERTY", 0, minimum=1, maximum=65535) == number
        else:
            with pytest.raises(ImproperlyConfigured, match="GW_PROPERTY must be at"):
                env_int("GW_PROPERTY", 0, minimum=1, maximum=65535)
    finally:
        del os.environ["GW_PROPERTY"]


def test_any_setting_can_come_from_a_file(monkeypatch, tmp_path):
    number = tmp_path / "number"
    number.write_text("42\n")
    monkeypatch.delenv("GW_NUMBER", raising=False)
    monkeypatch.setenv("GW_NUMBER_FILE", str(number))
    assert env_int("GW_NUMBER", 1, maximum=100) == 42


def test_a_file_wins_over_the_variable_it_stands_for(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file")
    monkeypatch.setenv("GW_SECRET", "from-the-environment")
    monkeypatch.setenv("GW_SECRET_FILE", str(secret))
    assert env_str("GW_SECRET") == "from-a-file"


def test_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("GW_SECRET", raising=False)
    monkeypatch.setenv("GW_SECRET_FILE", str(secret))
    assert env_str("GW_SECRET") == "from-a-file"


def test_unreadable_secret_file_stops_start_up(monkeypatch, tmp_path):
    monkeypatch.delenv("GW_SECRET", raising=False)
    monkeypatch.setenv("GW_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="GW_SECRET_FILE"):
        env_str("GW_SECRET")


def test_embedded_database_without_secret_key_is_fine(settings, monkeypatch):
    settings.SECRET_KEY_FROM_VAR_DIR = True
    monkeypatch.setattr("gateway.checks._database_is_shared", lambda: False)
    assert "gateway.W002" not in ids(gateway_settings_check())


def test_default_settings_pass_the_checks(settings):
    settings.SECRET_KEY_FROM_VAR_DIR = False
    assert gateway_settings_check() == []


def test_default_ttl_above_maximum_is_an_error(settings):
    settings.GATEWAY_DEFAULT_RESULT_TTL, settings.GATEWAY_MAX_RESULT_TTL = 100, 10
    assert "gateway.E001" in ids(gateway_settings_check())


def test_short_hs256_secret_is_an_error(settings):
    settings.GATEWAY_JWT_SECRET = "short"
    assert "gateway.E002" in ids(gateway_settings_check())


def test_rs256_without_public_key_is_an_error(settings):
    settings.GATEWAY_JWT_ALGORITHM = "RS256"
    settings.GATEWAY_JWT_PUBLIC_KEY = ""
    assert "gateway.E003" in ids(gateway_settings_check())


def test_shared_database_without_secret_key_is_warned(settings, monkeypatch):
    settings.SECRET_KEY_FROM_VAR_DIR = True
    monkeypatch.setattr("gateway.checks._database_is_shared", lambda: True)
    assert "gateway.W002" in ids(gateway_settings_check())


def test_a_default_jwt_lifetime_above_a_bound_is_warned(settings):
    settings.GATEWAY_JWT_DEFAULT_LIFETIME = 7200
    settings.GATEWAY_JWT_MAX_LIFETIME, settings.GATEWAY_JWT_ADMIN_MAX_LIFETIME = 86400, 3600
    warnings = [p for p in gateway_settings_check() if p.id == "gateway.W003"]
    assert [w.msg.split(":")[0] for w in warnings] == [
        "GATEWAY_JWT_DEFAULT_LIFETIME is above GATEWAY_JWT_ADMIN_MAX_LIFETIME"
    ]


def test_a_default_jwt_lifetime_within_both_bounds_is_not_warned(settings):
    settings.GATEWAY_JWT_DEFAULT_LIFETIME = 3600
    settings.GATEWAY_JWT_MAX_LIFETIME, settings.GATEWAY_JWT_ADMIN_MAX_LIFETIME = 86400, 3600
    assert "gateway.W003" not in ids(gateway_settings_check())


def _setting(expression: str, environ: dict[str, str], drop: tuple[str, ...] = ()) -> Any:
    """``expression`` over ``gateway.settings`` (as ``s``), built in a fresh process."""
    code = f"import json, gateway.settings as s; print(json.dumps({expression}, default=str))"
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(environ)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def _database_options(**environ: str) -> dict:
    """The default database's OPTIONS, as gateway.settings builds them for this environment."""
    return _setting("s.DATABASES['default'].get('OPTIONS', {})", environ, drop=("DATABASE_URL",))


def test_postgres_statements_are_prepared_by_default():
    options = _database_options(DATABASE_URL="postgres://u@db.invalid:5432/gw")
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5


def test_prepared_statements_can_be_turned_off_for_a_transaction_pooler():
    options = _database_options(
        DATABASE_URL="postgres://u@db.invalid:5432/gw", DB_PREPARED_STATEMENTS="false"
    )
    assert "server_side_binding" not in options
    assert "prepare_threshold" not in options


def test_a_redis_broker_keeps_no_unacknowledged_messages_a_worker_would_restore():
    # With Redis' ack emulation, a worker holding an unacknowledged message (a running purge,
    # an ack in flight) when Redis goes away tries to restore it on a connection Celery has
    # already torn down, and exits ("Unrecoverable error"). Bells need no redelivery: the job
    # rows are the queue, and beat sends its tasks again.
    redis = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    options = _setting("s.CELERY_BROKER_TRANSPORT_OPTIONS", redis)
    assert options["ack_emulation"] is False


def test_in_process_caches_are_not_closed_after_each_request_and_others_would_be():
    import weakref

    from django.conf import settings
    from django.core.cache import close_caches
    from django.core.signals import request_finished

    from gateway.apps import closes_nothing

    assert closes_nothing(settings.CACHES)
    receivers = [
        ref() if isinstance(ref, weakref.ReferenceType) else ref
        for _, ref, *_ in request_finished.receivers
    ]
    assert close_caches not in receivers
    memcached = {"default": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache"}}
    assert not closes_nothing(memcached)


@pytest.mark.parametrize("variable", ["GATEWAY_VAR_DIR", "GATEWAY_METRICS_DIR"])
def test_a_directory_that_cannot_be_made_stops_start_up_naming_its_variable(variable, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path / "var"), variable: str(blocker / "d")}
    out = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert f"{variable} must name a directory this process can create or use" in out.stderr
    assert "Traceback" not in out.stderr
