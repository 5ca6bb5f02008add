"""Settings from a given environment mapping: defaults, parsing, and the message of every refusal
(the variable named, a good value shown). The URL, timeout and database cases are in
tests/integration/test_settings.py next to the CLI runs that show the same messages; these are
the rest. Errors are asserted as ValueError (SettingsError today; one ConfigError later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpoint.settings import MIN_AUDIT_KEY, Settings, default_apply_lease, server_knobs

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
