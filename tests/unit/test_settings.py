"""Settings from a given environment mapping: defaults, parsing, and the message of every refusal
(the variable named, a good value shown): first the knobs beyond the URL, timeouts and database, then
the table of those (whose messages tests/integration/test_settings.py also reads from the CLI). Errors
are asserted as ValueError, or SettingsError where the table always named it. Longer than 400 lines:
two tables of cases, each a few lines a case."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from checkpoint.settings import MIN_AUDIT_KEY, Settings, SettingsError, default_apply_lease, server_knobs

GOOD = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001"}
KEY = "k" * MIN_AUDIT_KEY
OLD = "o" * MIN_AUDIT_KEY


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), **env})


def test_defaults_of_the_knobs_the_integration_table_leaves_out(tmp_path):
    got = settings(tmp_path)
    assert got.log_format == "json"
    assert got.allowed_hosts == ()
    assert got.background is True
    assert got.apply_lease == 390.0
    assert got.digest_max_bytes == 64 * 1024 * 1024
    assert got.audit_head_interval == 3600.0
    assert (got.audit_key, got.audit_old_keys, got.audit_key_path) == ("", (), None)
    assert (got.registry_username, got.registry_password, got.registry_token) == (None, None, None)


@pytest.mark.parametrize(
    ("env", "attribute", "expected"),
    [
        ({"CHECKPOINT_BACKGROUND": "false"}, "background", False),
        ({"CHECKPOINT_BACKGROUND": " No "}, "background", False),
        ({"CHECKPOINT_BACKGROUND": "0"}, "background", False),
        ({"CHECKPOINT_BACKGROUND": "YES"}, "background", True),
        ({"CHECKPOINT_BACKGROUND": "1"}, "background", True),
        ({"CHECKPOINT_LOG_FORMAT": " TEXT "}, "log_format", "text"),
        ({"CHECKPOINT_ZERO_COPY": " OFF "}, "zero_copy", "off"),
        ({"CHECKPOINT_ZERO_COPY": ""}, "zero_copy", "auto"),
        ({"CHECKPOINT_LOG_FORMAT": ""}, "log_format", "json"),
        ({"CHECKPOINT_LOG_LEVEL": "warning"}, "log_level", "WARNING"),
        (
            {"CHECKPOINT_ALLOWED_HOSTS": " a.example.com, ,b.example.com:8443 "},
            "allowed_hosts",
            ("a.example.com", "b.example.com:8443"),
        ),
        ({"CHECKPOINT_DIGEST_MAX_BYTES": "0"}, "digest_max_bytes", 0),
        ({"CHECKPOINT_AUDIT_HEAD_INTERVAL": "60"}, "audit_head_interval", 60.0),
        ({"CHECKPOINT_REGISTRY_USERNAME": "cp", "CHECKPOINT_REGISTRY_PASSWORD": "pw"}, "registry_username", "cp"),
        ({"CHECKPOINT_REGISTRY_TOKEN": "t"}, "registry_token", "t"),
        ({"CHECKPOINT_REGISTRY_TOKEN": ""}, "registry_token", None),
        ({"CHECKPOINT_DATABASE_URL": "sqlite:////var/lib/cp.db"}, "database_url", "sqlite:////var/lib/cp.db"),
    ],
)
def test_values_are_read(tmp_path, env, attribute, expected):
    assert getattr(settings(tmp_path, **env), attribute) == expected


BAD = [
    ("background-word", {"CHECKPOINT_BACKGROUND": "sometimes"}, r"CHECKPOINT_BACKGROUND='sometimes' must be true or false"),
    (
        "log-format",
        {"CHECKPOINT_LOG_FORMAT": "xml"},
        r"CHECKPOINT_LOG_FORMAT='xml' is not json or text; e\.g\. CHECKPOINT_LOG_FORMAT=json",
    ),
    (
        "zero-copy-word",
        {"CHECKPOINT_ZERO_COPY": "yes"},
        r"CHECKPOINT_ZERO_COPY='yes' is not auto or off; e\.g\. CHECKPOINT_ZERO_COPY=auto",
    ),
    ("digest-negative", {"CHECKPOINT_DIGEST_MAX_BYTES": "-1"}, r"CHECKPOINT_DIGEST_MAX_BYTES='-1' is out of range"),
    (
        "digest-word",
        {"CHECKPOINT_DIGEST_MAX_BYTES": "lots"},
        r"CHECKPOINT_DIGEST_MAX_BYTES='lots' is not a number; expected e\.g\. CHECKPOINT_DIGEST_MAX_BYTES=67108864",
    ),
    (
        "head-interval-short",
        {"CHECKPOINT_AUDIT_HEAD_INTERVAL": "0.5"},
        r"CHECKPOINT_AUDIT_HEAD_INTERVAL='0\.5' is out of range; expected 1\.\.604800, e\.g\. 3600",
    ),
    ("chunk-size-huge", {"CHECKPOINT_CHUNK_SIZE": str(32 * 1024 * 1024)}, r"CHECKPOINT_CHUNK_SIZE='33554432' is out of range"),
    ("pool-size-huge", {"CHECKPOINT_UPSTREAM_POOL_SIZE": "5000"}, r"CHECKPOINT_UPSTREAM_POOL_SIZE='5000' is out of range"),
    (
        "database-unknown-driver",
        {"CHECKPOINT_DATABASE_URL": "nosuchdb://x/y"},
        r"CHECKPOINT_DATABASE_URL='nosuchdb://x/y' is not a database URL",
    ),
    (
        "cors-with-query",
        {"CHECKPOINT_CORS_ALLOWED_ORIGINS": "https://a.example.com/?x=1"},
        r"CHECKPOINT_CORS_ALLOWED_ORIGINS=.* must not have a query or fragment",
    ),
    (
        "public-url-fragment",
        {"CHECKPOINT_PUBLIC_URL": "https://cp.example.com/#top"},
        r"CHECKPOINT_PUBLIC_URL=.* must not have a query or fragment",
    ),
    (
        "audit-key-short",
        {"CHECKPOINT_AUDIT_KEY": "short"},
        r"CHECKPOINT_AUDIT_KEY: the audit key is too short \(5 characters, at least 32\); make one with `openssl rand -hex 32`",
    ),
    (
        "audit-key-twice",
        {"CHECKPOINT_AUDIT_KEY": KEY, "CHECKPOINT_AUDIT_KEY_FILE": "/x"},
        r"CHECKPOINT_AUDIT_KEY and CHECKPOINT_AUDIT_KEY_FILE are both set",
    ),
    (
        "audit-old-key-short",
        {"CHECKPOINT_AUDIT_KEY": KEY, "CHECKPOINT_AUDIT_OLD_KEYS": f"{OLD}, tiny"},
        r"CHECKPOINT_AUDIT_OLD_KEYS \(key 2 of 2\): the audit key is too short \(4 characters",
    ),
    (
        "audit-key-file-missing",
        {"CHECKPOINT_AUDIT_KEY_FILE": "/nonexistent/audit.key"},
        r"CHECKPOINT_AUDIT_KEY_FILE='/nonexistent/audit\.key' cannot be read \(No such file or directory\)",
    ),
]


@pytest.mark.parametrize(("env", "pattern"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_value_is_refused_with_the_variable_named(tmp_path, env, pattern):
    with pytest.raises(ValueError, match=pattern):
        settings(tmp_path, **env)


def test_a_refusal_never_shows_the_audit_key(tmp_path):
    secret = "s3cr3t-but-short"
    with pytest.raises(ValueError, match="too short") as refused:
        settings(tmp_path, CHECKPOINT_AUDIT_KEY=secret)
    assert secret not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "current", "retired"),
    [
        (f"{KEY}\n", KEY, ()),
        (f"# rotated 2026-01\n\n{KEY}\n{OLD}\n", KEY, (OLD,)),
        (f"  {KEY}  \n  # old ones follow\n{OLD}", KEY, (OLD,)),
    ],
    ids=["one-key", "comments-and-blank-lines", "stripped"],
)
def test_audit_key_file_holds_the_current_key_then_retired_ones(tmp_path, text, current, retired):
    path = tmp_path / "audit.key"
    path.write_text(text, encoding="utf-8")
    got = settings(tmp_path, CHECKPOINT_AUDIT_KEY_FILE=str(path))
    assert (got.audit_key, got.audit_old_keys) == (current, retired)


def test_audit_key_file_with_no_key_is_refused(tmp_path):
    path = tmp_path / "audit.key"
    path.write_text("# nothing here yet\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"CHECKPOINT_AUDIT_KEY_FILE=.* holds no key: put the audit key on its first line"):
        settings(tmp_path, CHECKPOINT_AUDIT_KEY_FILE=str(path))


def test_old_keys_are_split_on_commas_and_spaces(tmp_path):
    other = "p" * 40
    got = settings(tmp_path, CHECKPOINT_AUDIT_KEY=KEY, CHECKPOINT_AUDIT_OLD_KEYS=f" {OLD},{other}  ")
    assert got.audit_old_keys == (OLD, other)
    # Retired keys alone (no current one): with_audit_key generates the current one later.
    alone = settings(tmp_path, CHECKPOINT_AUDIT_OLD_KEYS=OLD)
    assert (alone.audit_key, alone.audit_old_keys) == ("", (OLD,))


def test_generated_audit_key_is_kept_and_reused(tmp_path):
    first = settings(tmp_path / "a").with_audit_key()
    again = settings(tmp_path / "a").with_audit_key()
    assert len(first.audit_key) == 64 and again.audit_key == first.audit_key
    assert first.audit_key_path == tmp_path / "a" / "audit_key"
    # Reading without creating: nothing there, nothing made.
    untouched = settings(tmp_path / "b").with_audit_key(create=False)
    assert untouched.audit_key == "" and not (tmp_path / "b" / "audit_key").exists()


def test_a_damaged_generated_audit_key_is_refused(tmp_path):
    (tmp_path / "audit_key").write_text("cut short")
    with pytest.raises(ValueError, match=r"the generated audit key .* is damaged \(9 characters\)"):
        settings(tmp_path).with_audit_key()


@pytest.mark.parametrize(("read_timeout", "lease"), [(120.0, 390.0), (10.0, 90.0), (60.0, 390.0), (0.05, 30.3)])
def test_default_apply_lease(read_timeout, lease):
    assert default_apply_lease(read_timeout) == pytest.approx(lease)


def test_typed_overrides_skip_the_environment(tmp_path):
    got = Settings.from_env(
        {**GOOD, "CHECKPOINT_LOG_FORMAT": "text"}, data_dir=tmp_path, log_format="JSON", allowed_hosts=("h",), background=False
    )
    assert (got.log_format, got.allowed_hosts, got.background, got.data_dir) == ("json", ("h",), False, tmp_path)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"host": "127.0.0.1", "port": 5000, "workers": None, "threads": None}),
        (
            {"CHECKPOINT_HOST": " 0.0.0.0 ", "CHECKPOINT_PORT": "8080", "CHECKPOINT_WORKERS": "2", "CHECKPOINT_THREADS": "8"},
            {"host": "0.0.0.0", "port": 8080, "workers": 2, "threads": 8},
        ),
        (
            {"CHECKPOINT_PORT": " ", "CHECKPOINT_WORKERS": ""},
            {"host": "127.0.0.1", "port": 5000, "workers": None, "threads": None},
        ),
    ],
    ids=["defaults", "set", "blank-means-default"],
)
def test_server_knobs(env, expected):
    assert server_knobs(env) == expected


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        ({"CHECKPOINT_PORT": "http"}, r"CHECKPOINT_PORT='http' is not a number; expected e\.g\. CHECKPOINT_PORT=5000"),
        ({"CHECKPOINT_PORT": "70000"}, r"CHECKPOINT_PORT='70000' is out of range; expected 1\.\.65535"),
        ({"CHECKPOINT_WORKERS": "0"}, r"CHECKPOINT_WORKERS='0' is out of range; expected 1\.\.64, e\.g\. 4"),
        ({"CHECKPOINT_THREADS": "many"}, r"CHECKPOINT_THREADS='many' is not a number"),
    ],
    ids=["port-word", "port-range", "workers-zero", "threads-word"],
)
def test_server_knobs_refuse_with_the_variable_named(env, pattern):
    with pytest.raises(ValueError, match=pattern):
        server_knobs(env)


# -- the registry URL, timeouts, pool, database and public URL; the defaults; overrides; the secret --


# (id, environment over GOOD, pattern the message must match: the variable and an example)
BAD_VALUES = [
    (
        "registry-missing",
        {"CHECKPOINT_REGISTRY_URL": ""},
        r"CHECKPOINT_REGISTRY_URL is not set.*e\.g\. CHECKPOINT_REGISTRY_URL=http://127\.0\.0\.1:5001",
    ),
    (
        "registry-blank",
        {"CHECKPOINT_REGISTRY_URL": "   "},
        r"CHECKPOINT_REGISTRY_URL is not set.*CHECKPOINT_REGISTRY_URL=http://",
    ),
    (
        "registry-no-scheme",
        {"CHECKPOINT_REGISTRY_URL": "127.0.0.1:5001"},
        r"CHECKPOINT_REGISTRY_URL='127\.0\.0\.1:5001' is not an http\(s\) URL.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-wrong-scheme",
        {"CHECKPOINT_REGISTRY_URL": "ftp://mlflow:5001"},
        r"CHECKPOINT_REGISTRY_URL='ftp://mlflow:5001' is not an http\(s\) URL.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-no-host",
        {"CHECKPOINT_REGISTRY_URL": "http://:5001"},
        r"CHECKPOINT_REGISTRY_URL='http://:5001' is not an http\(s\) URL.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-port-not-a-number",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:mlflow"},
        r"CHECKPOINT_REGISTRY_URL='http://127\.0\.0\.1:mlflow' has a bad port.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-port-out-of-range",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:99999"},
        r"CHECKPOINT_REGISTRY_URL='http://127\.0\.0\.1:99999' has a bad port.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-query",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001/?x=1"},
        r"CHECKPOINT_REGISTRY_URL=.* must not have a query or fragment.*http://127\.0\.0\.1:5001",
    ),
    (
        "connect-timeout-word",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "five"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='five' is not a number.*CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT=5",
    ),
    (
        "connect-timeout-zero",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "0"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='0' is out of range.*e\.g\. 5",
    ),
    (
        "connect-timeout-negative",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "-1"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='-1' is out of range.*e\.g\. 5",
    ),
    (
        "connect-timeout-nan",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "nan"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='nan' is out of range",
    ),
    (
        "read-timeout-word",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "2m"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='2m' is not a number.*CHECKPOINT_UPSTREAM_READ_TIMEOUT=120",
    ),
    (
        "read-timeout-infinite",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "inf"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='inf' is out of range.*e\.g\. 120",
    ),
    (
        "read-timeout-too-long",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "1e9"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='1e9' is out of range.*e\.g\. 120",
    ),
    (
        "pool-size-fraction",
        {"CHECKPOINT_UPSTREAM_POOL_SIZE": "1.5"},
        r"CHECKPOINT_UPSTREAM_POOL_SIZE='1\.5' is not a number.*CHECKPOINT_UPSTREAM_POOL_SIZE=64",
    ),
    (
        "pool-size-zero",
        {"CHECKPOINT_UPSTREAM_POOL_SIZE": "0"},
        r"CHECKPOINT_UPSTREAM_POOL_SIZE='0' is out of range.*e\.g\. 64",
    ),
    (
        "chunk-size-tiny",
        {"CHECKPOINT_CHUNK_SIZE": "512"},
        r"CHECKPOINT_CHUNK_SIZE='512' is out of range.*e\.g\. 65536",
    ),
    (
        "apply-lease-word",
        {"CHECKPOINT_APPLY_LEASE_SECONDS": "5m"},
        r"CHECKPOINT_APPLY_LEASE_SECONDS='5m' is not a number.*CHECKPOINT_APPLY_LEASE_SECONDS=390",
    ),
    (
        "apply-lease-zero",
        {"CHECKPOINT_APPLY_LEASE_SECONDS": "0"},
        r"CHECKPOINT_APPLY_LEASE_SECONDS='0' is out of range.*e\.g\. 390",
    ),
    (
        "apply-lease-infinite",
        {"CHECKPOINT_APPLY_LEASE_SECONDS": "inf"},
        r"CHECKPOINT_APPLY_LEASE_SECONDS='inf' is out of range.*e\.g\. 390",
    ),
    (
        "database-path-not-url",
        {"CHECKPOINT_DATABASE_URL": "/var/lib/checkpoint/checkpoint.db"},
        r"CHECKPOINT_DATABASE_URL='/var/lib/checkpoint/checkpoint\.db' is not a database URL.*"
        r"sqlite:////var/lib/checkpoint/checkpoint\.db.*postgresql\+psycopg://",
    ),
    (
        # Heroku-style URLs: SQLAlchemy 2 has no "postgres" dialect, so this must be caught at start.
        "database-postgres-scheme",
        {"CHECKPOINT_DATABASE_URL": "postgres://checkpoint:secret@127.0.0.1:5432/checkpoint"},
        r"CHECKPOINT_DATABASE_URL=.*postgresql\+psycopg://",
    ),
    (
        "database-sqlite-two-slashes",
        {"CHECKPOINT_DATABASE_URL": "sqlite://checkpoint.db"},
        r"CHECKPOINT_DATABASE_URL=.*sqlite:////",
    ),
    (
        "public-url-no-scheme",
        {"CHECKPOINT_PUBLIC_URL": "checkpoint.example.com"},
        r"CHECKPOINT_PUBLIC_URL='checkpoint\.example\.com' is not an http\(s\) URL.*https://checkpoint\.example\.com",
    ),
    (
        "public-url-bad-port",
        {"CHECKPOINT_PUBLIC_URL": "https://checkpoint.example.com:https"},
        r"CHECKPOINT_PUBLIC_URL=.* has a bad port.*https://checkpoint\.example\.com",
    ),
    (
        "cors-origin-no-scheme",
        {"CHECKPOINT_CORS_ALLOWED_ORIGINS": "https://a.example.com, notebooks.example.com"},
        r"CHECKPOINT_CORS_ALLOWED_ORIGINS='notebooks\.example\.com' is not an http\(s\) URL.*https://",
    ),
    (
        "log-level-unknown",
        {"CHECKPOINT_LOG_LEVEL": "verbose"},
        r"CHECKPOINT_LOG_LEVEL='VERBOSE' is not one of DEBUG, INFO, WARNING, ERROR",
    ),
]


@pytest.mark.parametrize(("env", "pattern"), [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES])
def test_bad_value_names_variable_and_example(env, pattern, tmp_path):
    with pytest.raises(SettingsError, match=pattern):
        Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), **env})


def test_defaults(tmp_path):
    settings = Settings.from_env({"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001/", "CHECKPOINT_DATA_DIR": str(tmp_path)})
    assert settings.registry_url == "http://127.0.0.1:5001"
    assert settings.upstream_origin == "http://127.0.0.1:5001"
    assert settings.data_dir == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'checkpoint.db'}"
    assert settings.upstream_connect_timeout == 5.0
    assert settings.upstream_read_timeout == 120.0
    assert settings.upstream_pool_size == 64
    assert settings.chunk_size == 64 * 1024
    assert settings.log_level == "INFO"
    assert settings.public_url is None
    assert settings.cors_allowed_origins == ()
    assert settings.secret_key == ""


def test_default_data_dir_is_in_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.from_env(GOOD)
    assert settings.data_dir == tmp_path / ".checkpoint"
    assert settings.database_url == f"sqlite:///{tmp_path / '.checkpoint' / 'checkpoint.db'}"


def test_values_are_parsed_and_normalised(tmp_path):
    settings = Settings.from_env(
        {
            "CHECKPOINT_REGISTRY_URL": " https://mlflow.internal:8443/prefix/ ",
            "CHECKPOINT_DATA_DIR": str(tmp_path),
            "CHECKPOINT_DATABASE_URL": "postgresql+psycopg://cp:secret@db:5432/checkpoint",
            "CHECKPOINT_PUBLIC_URL": "https://checkpoint.example.com/",
            "CHECKPOINT_CORS_ALLOWED_ORIGINS": "https://a.example.com/, ,https://b.example.com",
            "CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": " 2.5 ",
            "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "30",
            "CHECKPOINT_UPSTREAM_POOL_SIZE": "8",
            "CHECKPOINT_CHUNK_SIZE": "1024",
            "CHECKPOINT_LOG_LEVEL": "debug",
            "CHECKPOINT_SECRET_KEY": "s3cret",
            "UNRELATED": "ignored",
        }
    )
    assert settings.registry_url == "https://mlflow.internal:8443/prefix"
    assert settings.upstream_origin == "https://mlflow.internal:8443"
    assert settings.database_url == "postgresql+psycopg://cp:secret@db:5432/checkpoint"
    assert settings.public_url == "https://checkpoint.example.com"
    assert settings.cors_allowed_origins == ("https://a.example.com", "https://b.example.com")
    assert settings.upstream_connect_timeout == 2.5
    assert settings.upstream_read_timeout == 30.0
    assert settings.upstream_pool_size == 8
    assert settings.chunk_size == 1024
    assert settings.log_level == "DEBUG"
    assert settings.secret_key == "s3cret"


def test_overrides_win_over_environment(tmp_path):
    env = {**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "30"}
    settings = Settings.from_env(env, registry_url="http://127.0.0.1:6000", upstream_read_timeout=7)
    assert settings.registry_url == "http://127.0.0.1:6000"
    assert settings.upstream_read_timeout == 7.0


def test_apply_lease_follows_the_registry_timeout_unless_set(tmp_path):
    """An apply's registry calls wait up to 5 s + min(read timeout, 60 s) each; the lease outlasts ~6 of them."""
    env = {**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).apply_lease == 390.0
    assert Settings.from_env({**env, "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "10"}).apply_lease == 90.0
    assert Settings.from_env({**env, "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "600"}).apply_lease == 390.0
    assert Settings.from_env({**env, "CHECKPOINT_APPLY_LEASE_SECONDS": " 2.5 "}).apply_lease == 2.5


def test_unknown_override_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="unknown setting.*registy_url"):
        Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path)}, registy_url="http://127.0.0.1:1")


def test_generated_secret_is_kept_private_and_stable(tmp_path):
    settings = Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path / "data")})
    first = settings.with_secret()
    second = Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path / "data")}).with_secret()
    assert len(first.secret_key) == 64
    assert second.secret_key == first.secret_key
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no temp file left behind


def test_configured_secret_wins(tmp_path):
    settings = Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), "CHECKPOINT_SECRET_KEY": "mine"})
    assert settings.with_secret().secret_key == "mine"
    assert not (tmp_path / "secret_key").exists()


# -- the audit key: refused at start, never shown --------------------------------------------------


def test_bad_keys_are_refused_at_start(tmp_path):
    short = "too-short-" + "9" * 10
    empty, unreadable = tmp_path / "empty", tmp_path / "unreadable"
    empty.write_text("# only a comment\n\n")
    unreadable.write_text(KEY)
    unreadable.chmod(0)
    cases = [
        ({"CHECKPOINT_AUDIT_KEY": short}, r"CHECKPOINT_AUDIT_KEY: the audit key is too short \(20 characters, at least 32\)"),
        (
            {"CHECKPOINT_AUDIT_KEY": KEY, "CHECKPOINT_AUDIT_KEY_FILE": str(empty)},
            "CHECKPOINT_AUDIT_KEY and CHECKPOINT_AUDIT_KEY_FILE are both set",
        ),
        ({"CHECKPOINT_AUDIT_KEY_FILE": str(tmp_path / "missing")}, r"CHECKPOINT_AUDIT_KEY_FILE=.*missing.* cannot be read"),
        ({"CHECKPOINT_AUDIT_KEY_FILE": str(tmp_path)}, r"CHECKPOINT_AUDIT_KEY_FILE=.* cannot be read"),
        ({"CHECKPOINT_AUDIT_KEY_FILE": str(empty)}, r"CHECKPOINT_AUDIT_KEY_FILE=.*empty.* holds no key"),
        (
            {"CHECKPOINT_AUDIT_KEY": KEY, "CHECKPOINT_AUDIT_OLD_KEYS": f"{OLD},{short}"},
            r"CHECKPOINT_AUDIT_OLD_KEYS \(key 2 of 2\): the audit key is too short",
        ),
    ]
    if os.geteuid() != 0:  # root reads a mode-0 file anyway; the directory case above stands in for it
        cases.append(({"CHECKPOINT_AUDIT_KEY_FILE": str(unreadable)}, r"CHECKPOINT_AUDIT_KEY_FILE=.* cannot be read \("))
    for env, pattern in cases:
        with pytest.raises(SettingsError, match=pattern) as caught:
            settings(tmp_path, **env)
        assert short not in str(caught.value) and KEY not in str(caught.value)
    file_key = tmp_path / "key-file"
    file_key.write_text(f"{KEY}\n{short}\n")
    with pytest.raises(SettingsError, match=r"CHECKPOINT_AUDIT_KEY_FILE=.* line 2: the audit key is too short"):
        settings(tmp_path, CHECKPOINT_AUDIT_KEY_FILE=str(file_key))


def test_damaged_generated_key_is_refused(tmp_path):
    (tmp_path / "audit_key").write_text("abc\n")
    read = settings(tmp_path)
    with pytest.raises(SettingsError, match=r"generated audit key .*audit_key is damaged"):
        read.with_audit_key()


def test_commands_that_only_read_the_database_need_no_registry(tmp_path):
    env = {"CHECKPOINT_DATA_DIR": str(tmp_path), "CHECKPOINT_DATABASE_URL": "sqlite:///x.db"}
    settings = Settings.from_env(env, registry_required=False)
    assert (settings.registry_url, settings.database_url) == ("", "sqlite:///x.db")
    with pytest.raises(SettingsError, match="CHECKPOINT_REGISTRY_URL is not set"):
        Settings.from_env(env)
    with pytest.raises(SettingsError, match="is not an http"):  # given, it is still checked
        Settings.from_env({**env, "CHECKPOINT_REGISTRY_URL": "127.0.0.1:5001"}, registry_required=False)


def test_private_paths_name_every_place_of_secrets(tmp_path):
    """What model runs must not see (runtime/jail.py covers each): one list, from the settings."""
    env = {
        "CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5000",
        "CHECKPOINT_DATA_DIR": str(tmp_path / "data"),
        "CHECKPOINT_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'checkpoint.db'}",
        "CHECKPOINT_AUDIT_KEY_FILE": str(tmp_path / "keys" / "audit"),
    }
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "audit").write_text("a" * 64 + "\n")
    paths = Settings.from_env(env).private_paths()
    for private in ("data", "db", "keys/audit"):
        assert tmp_path / private in paths
    assert Path.home() / ".mlflow" in paths
    postgres = Settings.from_env({**env, "CHECKPOINT_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1/db"})
    assert tmp_path / "db" not in postgres.private_paths()


def test_evaluator_env_is_local_by_default_uv_on_request_and_its_cache_is_private(tmp_path, monkeypatch):
    env = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5000", "CHECKPOINT_DATA_DIR": str(tmp_path / "data")}
    assert Settings.from_env(env).evaluator_env == "local"
    cache = tmp_path / "uv-cache"
    chosen = Settings.from_env({**env, "CHECKPOINT_EVALUATOR_ENV": " UV ", "CHECKPOINT_EVALUATOR_ENV_CACHE": str(cache)})
    assert chosen.evaluator_env == "uv" and chosen.evaluator_env_cache == cache and cache in chosen.private_paths()
    with pytest.raises(SettingsError, match="CHECKPOINT_EVALUATOR_ENV='conda' is not local or uv"):
        Settings.from_env({**env, "CHECKPOINT_EVALUATOR_ENV": "conda"})
    with pytest.raises(SettingsError, match="CHECKPOINT_EVALUATOR_ENV_TIMEOUT"):
        Settings.from_env({**env, "CHECKPOINT_EVALUATOR_ENV_TIMEOUT": "1"})
    monkeypatch.setattr("checkpoint.runtime.envs.find_uv", lambda: None)  # a machine without uv
    with pytest.raises(SettingsError, match="needs the uv program"):
        Settings.from_env({**env, "CHECKPOINT_EVALUATOR_ENV": "uv"})
    assert Settings.from_env({**env, "CHECKPOINT_EVALUATOR_ENV": "uv", "CHECKPOINT_EVALUATOR": "off"}).evaluator_env == "uv"
