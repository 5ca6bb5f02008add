"""One configuration: Settings reads the variables, policy_file.py reads the policy file once,
and every bad value is one ConfigError naming the variable or the key path."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from checkpoint import identity, policy_file
from checkpoint.errors import ConfigError
from checkpoint.events import webhooks
from checkpoint.review import governance
from checkpoint.review.policy import Policy
from checkpoint.settings import Settings

GOOD = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001"}
POLICY = """
protected_aliases: [champion, "gold*"]
rules:
  - name: fraud production
    models: ["fraud-*"]
    targets: ["alias:champion"]
    reviewers: [bob, dave]
    required_approvals: 2
    checks:
      - {name: auc-gate, kind: metric, expression: "val_auc >= champion - 0.005"}
webhooks:
  - {name: ops, url: "http://127.0.0.1:9/hook", events: [applied], secret_env: HOOK_SECRET}
"""


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), **env})


def test_the_file_is_read_into_typed_sections(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    loaded = (
        settings(tmp_path, CHECKPOINT_POLICY_FILE=str(path), HOOK_SECRET="s3", CHECKPOINT_REQUIRED_APPROVALS="3")
        .with_policy()
        .policy
    )
    assert loaded is not None
    assert loaded.protection.protected_aliases == ("champion", "gold*")
    assert loaded.protection.governed_stages == ("Staging", "Production")  # the default stays
    (rule,) = loaded.rules.rules
    assert (rule.name, rule.required_approvals, [c.name for c in rule.checks]) == ("fraud production", 2, ["auc-gate"])
    assert loaded.rules.default.required_approvals == 3  # CHECKPOINT_REQUIRED_APPROVALS: the default rule
    (hook,) = loaded.webhooks.hooks
    assert (hook.name, hook.secret, hook.events) == ("ops", "s3", frozenset({"applied"}))


def test_the_file_is_read_once(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - {name: only, reviewers: [bob]}\n")
    first = settings(tmp_path, CHECKPOINT_POLICY_FILE=str(path)).with_policy()
    path.unlink()  # what a worker inherits from the master needs no file
    assert first.with_policy() is first
    assert first.policy is not None and first.policy.rules.rules[0].name == "only"


def test_no_file_means_every_section_s_defaults(tmp_path):
    assert settings(tmp_path).with_policy().policy == policy_file.PolicyFile()
    assert Policy.from_env({}) == Policy() and governance.load(env={}) == governance.Governance()
    assert webhooks.load({}) == webhooks.Webhooks()


@pytest.mark.parametrize("load", [Policy.from_env, lambda env: governance.load(env=env), webhooks.load])
def test_a_missing_file_stops_start_up_whichever_section_asks(tmp_path, load):
    """The one rule (docs/deploy.md: a missing or bad value stops start-up); the rules' and the
    webhooks' loaders used to skip a missing file and leave the error to governance's."""
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=r"CHECKPOINT_POLICY_FILE='.*nowhere\.yaml' does not exist or is not a file"):
        load({"CHECKPOINT_POLICY_FILE": str(missing)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", r"policy\.yaml: not valid YAML"),
        ("- a list", r"policy\.yaml: the top level must be a mapping"),
        (
            "rules:\n  - name: fraud production\n    checks:\n      - {name: auc-gate, kind: metric, expression: 'val_auc >='}\n",
            r"rules\[0\] \(fraud production\)\.checks\[0\] \(auc-gate\)\.expression",
        ),
        ("protected_tags: [1]\n", r"protected_tags: expected a list of non-empty strings"),
        ("webhooks:\n  - {name: x, url: 'ftp://h/', events: ['*']}\n", r"webhooks\[0\] \(x\)\.url: expected an http"),
    ],
    ids=["yaml", "not-a-mapping", "check-expression", "protection", "webhook"],
)
def test_a_bad_file_names_the_key_path(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, CHECKPOINT_POLICY_FILE=str(path)).with_policy()


def test_a_variable_replaces_the_file_s_protection_list(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("governed_stages: [Production]\nprotected_models: ['prod.*']\n")
    loaded = settings(tmp_path, CHECKPOINT_POLICY_FILE=str(path), CHECKPOINT_GOVERNED_STAGES="staging, production")
    protection = loaded.with_policy().policy.protection  # type: ignore[union-attr]
    assert protection.governed_stages == ("Staging", "Production") and protection.protected_models == ("prod.*",)
    with pytest.raises(ConfigError, match=r"governed_stages: \['Nightly'\] not among"):
        settings(tmp_path, CHECKPOINT_GOVERNED_STAGES="Nightly").with_policy()


def test_identity_knobs_are_settings(tmp_path):
    read = settings(
        tmp_path,
        CHECKPOINT_AUTH=" Header ",
        CHECKPOINT_TRUSTED_PROXIES="10.0.0.5, 127.0.0.1/32",
        CHECKPOINT_ADMINS="root, ,ops",
        CHECKPOINT_GROUPS_HEADER="X-Groups",
    )
    assert read.auth == "header" and read.admins == {"root", "ops"} and read.groups_header == "X-Groups"
    assert read.trusted_proxies == (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("127.0.0.1/32"))
    auth = identity.from_settings(read)
    assert isinstance(auth, identity.HeaderAuth) and auth.trusts({"REMOTE_ADDR": "127.0.0.1"})
    assert not auth.trusts({"REMOTE_ADDR": "10.0.0.6"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth": "ldap"}, r"CHECKPOINT_AUTH='ldap' is not one of none, header, mlflow"),
        ({"auth": "header"}, r"CHECKPOINT_AUTH=header needs CHECKPOINT_TRUSTED_PROXIES"),
        ({"auth": "header", "trusted_proxies": "nonsense"}, r"CHECKPOINT_TRUSTED_PROXIES='nonsense'.*expected CIDRs"),
        ({"required_approvals": 0}, r"CHECKPOINT_REQUIRED_APPROVALS='0': expected a whole number from 1 to 20"),
        ({"allow_self_approval": "maybe"}, r"CHECKPOINT_ALLOW_SELF_APPROVAL='maybe': expected true or false"),
    ],
)
def test_create_app_config_is_validated_as_the_variable(tmp_path, overrides, message):
    """``create_app({...})`` passes its keys here: a bad one is named by its variable."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path)}, **overrides)


def test_typed_and_text_overrides_agree_and_win_over_the_environment(tmp_path):
    env = {**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), "CHECKPOINT_ADMINS": "env-admin", "CHECKPOINT_AUTH": "mlflow"}
    typed = Settings.from_env(
        env,
        auth="header",
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
        admins=frozenset({"root"}),
        required_approvals=2,
        policy_file=None,
        allow_unauthenticated=True,
    )
    text = Settings.from_env(
        env, auth="header", trusted_proxies="127.0.0.1/32", admins="root", required_approvals="2", allow_unauthenticated="true"
    )
    assert typed == text
    assert (typed.auth, typed.admins, typed.required_approvals, typed.allow_unauthenticated) == ("header", {"root"}, 2, True)


def test_serving_knobs_and_defaults(tmp_path):
    read = settings(tmp_path, CHECKPOINT_ACCESS_LOG="-", CHECKPOINT_FORWARDED_ALLOW_IPS="10.0.0.1")
    assert (read.access_log, read.forwarded_allow_ips) == ("-", "10.0.0.1")
    plain = settings(tmp_path)
    assert (plain.access_log, plain.forwarded_allow_ips, plain.policy_file) == (None, "127.0.0.1,::1", None)
    assert (plain.auth, plain.required_approvals, plain.allow_self_approval, plain.allow_unauthenticated) == (
        "none",
        1,
        False,
        False,
    )
