"""Database URLs: credentials come from the environment and never show in a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.database import DatabaseUrl, is_database_url
from features.errors import ConfigError


def test_a_password_reference_resolves_from_the_environment_and_is_never_shown(monkeypatch):
    monkeypatch.setenv("CRM_PW", "s3cr3t-Value")
    url = DatabaseUrl("postgresql+psycopg://crm:${CRM_PW}@127.0.0.1:5433/warehouse")
    assert url.dialect == "postgresql"
    assert url.resolve() == "postgresql://crm:s3cr3t-Value@127.0.0.1:5433/warehouse"
    assert "s3cr3t" not in url.shown and "CRM_PW" not in url.shown
    assert url.shown == "postgresql+psycopg://crm:***@127.0.0.1:5433/warehouse"
    leaked = 'connection to "postgresql://crm:s3cr3t-Value@127.0.0.1:5433/warehouse" failed'
    assert "s3cr3t" not in url.hide(leaked)
    assert "s3cr3t" not in url.hide("bad password s3cr3t-Value\nsecond line")


def test_a_missing_variable_is_named():
    url = DatabaseUrl("postgresql://crm:${INMARKET_TEST_UNSET_PW}@db/warehouse")
    with pytest.raises(ConfigError, match="set the environment variable INMARKET_TEST_UNSET_PW"):
        url.resolve()


def test_a_literal_password_is_refused_without_printing_it():
    with pytest.raises(ConfigError, match=r"holds a password; write \$\{PGPASSWORD\}") as err:
        DatabaseUrl("postgresql://crm:hunter2@db/warehouse")
    assert "hunter2" not in str(err.value)


def test_duckdb_urls_name_a_file(tmp_path):
    url = DatabaseUrl(f"duckdb://{tmp_path}/w.duckdb")
    assert url.dialect == "duckdb" and url.path == tmp_path / "w.duckdb"
    assert DatabaseUrl("duckdb://rel/w.duckdb").path == Path("rel/w.duckdb")
    with pytest.raises(ConfigError, match="name the file"):
        DatabaseUrl("duckdb:///")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://h/db", True),
        ("duckdb:///x.duckdb", True),
        ("data/world", False),
        ("file:///data/world", False),
        ("mysql://h/db", False),
    ],
)
def test_database_urls_are_told_from_paths(text, expected):
    assert is_database_url(text) is expected


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ConfigError, match="not a database URL; use one of postgresql://"):
        DatabaseUrl("mysql://h/db")


def test_the_hidden_message_drops_libpq_s_own_password_too(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "pg-Env-Secret")
    url = DatabaseUrl("postgresql://crm@db/warehouse")
    assert url.hide("auth failed for pg-Env-Secret") == "auth failed for ***"


def test_the_warehouse_role_signs_in_with_its_password_only(postgres):
    import psycopg

    role, password = postgres.password_user
    where = f"{postgres.host}:{postgres.port}/postgres"
    with psycopg.connect(f"postgresql://{role}:{password}@{where}") as connection:
        assert connection.execute("select current_user").fetchone() == (role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://{role}:wrong@{where}")


def test_a_password_of_any_character_reaches_the_driver_encoded_and_is_hidden(monkeypatch):
    secret = "p#ss/w?rd@x%41"
    monkeypatch.setenv("ODD_PW", secret)
    url = DatabaseUrl("postgresql://crm:${ODD_PW}@db:5432/warehouse")
    resolved = url.resolve()
    assert resolved == "postgresql://crm:p%23ss%2Fw%3Frd%40x%2541@db:5432/warehouse"
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(resolved)
    assert (parts.hostname, parts.port, unquote(parts.password or "")) == ("db", 5432, secret)
    assert "p%23ss" not in url.hide(f"failed for {resolved}")
    assert secret not in url.hide(f"failed for {secret}")


def test_a_password_in_the_query_is_refused_and_a_reference_there_is_hidden():
    with pytest.raises(ConfigError, match="holds a password") as err:
        DatabaseUrl("postgresql://crm@db/warehouse?password=hunter2")
    assert "hunter2" not in str(err.value)
    url = DatabaseUrl("postgresql://crm@db/warehouse?sslmode=require&password=${CRM_PW}")
    assert url.shown == "postgresql://crm@db/warehouse?sslmode=require&password=***"
