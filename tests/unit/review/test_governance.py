"""What is protected: the default lists, matching (aliases in any case, stages by their canonical
name), and the lists read from the policy file with their ``CHECKPOINT_*`` overrides."""

from __future__ import annotations

import json

import pytest

from checkpoint.review import governance
from checkpoint.review.governance import Governance

DEFAULT = Governance()


@pytest.mark.parametrize(
    ("question", "value", "expected"),
    [
        ("stage_governed", "Production", True),
        ("stage_governed", "staging", True),
        ("stage_governed", " PRODUCTION ", True),
        ("stage_governed", "Archived", False),
        ("stage_governed", "None", False),
        ("stage_governed", "", False),
        ("stage_governed", None, False),
        ("alias_protected", "champion", True),
        ("alias_protected", "CHAMPION", True),
        ("alias_protected", "prod-eu", True),
        ("alias_protected", "Staging_2", True),
        ("alias_protected", "challenger", False),
        ("model_protected", "prod.fraud", True),
        ("model_protected", "Prod.fraud", False),  # model names are case-sensitive, as in MLflow
        ("model_protected", "fraud", False),
        ("tag_protected", "validation_status", True),
        ("tag_protected", "note", False),
    ],
)
def test_the_defaults(question, value, expected):
    assert getattr(DEFAULT, question)(value) is expected


def load(tmp_path, data: object, **env: str) -> Governance:
    if data is not None:
        path = tmp_path / "policy.yaml"
        path.write_text(json.dumps(data))
        env["CHECKPOINT_POLICY_FILE"] = str(path)
    return governance.load(env=env)


def test_lists_from_the_file_top_level_or_under_governance(tmp_path):
    top = load(tmp_path, {"protected_aliases": ["Gold", " live* "], "governed_stages": ["production"]})
    assert top.protected_aliases == ("gold", "live*") and top.governed_stages == ("Production",)
    assert top.protected_models == DEFAULT.protected_models  # a list left out keeps its default
    nested = load(tmp_path, {"governance": {"protected_tags": ["qa"]}, "rules": []})
    assert nested.protected_tags == ("qa",) and nested.protected_aliases == DEFAULT.protected_aliases


def test_variables_override_the_file(tmp_path):
    got = load(
        tmp_path,
        {"protected_tags": ["qa"]},
        CHECKPOINT_PROTECTED_TAGS=" owner, ,team ",
        CHECKPOINT_GOVERNED_STAGES="Archived",
        CHECKPOINT_PROTECTED_ALIASES="  ",
    )
    assert got.protected_tags == ("owner", "team")
    assert got.governed_stages == ("Archived",)
    assert got.protected_aliases == DEFAULT.protected_aliases  # a blank variable does not override
    assert load(tmp_path, None) == DEFAULT


@pytest.mark.parametrize(
    ("data", "env", "pattern"),
    [
        ({"protected_aliases": "champion"}, {}, r"protected_aliases: expected a list of non-empty strings, got 'champion'"),
        ({"protected_models": ["ok", ""]}, {}, r"protected_models: expected a list of non-empty strings"),
        ({"governed_stages": ["Live"]}, {}, r"governed_stages: \['Live'\] not among Staging, Production, Archived"),
        ({"governed_stages": ["None"]}, {}, r"governed_stages: \['None'\] not among"),
        (None, {"CHECKPOINT_GOVERNED_STAGES": "Staging,Prod"}, r"governed_stages: \['Prod'\] not among"),
        (["champion"], {}, r"the top level must be a mapping of keys such as protected_aliases"),
    ],
)
def test_a_bad_list_is_refused_with_its_key(tmp_path, data, env, pattern):
    with pytest.raises(ValueError, match=pattern):
        load(tmp_path, data, **env)


def test_a_missing_policy_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"CHECKPOINT_POLICY_FILE='.*nope\.yaml' does not exist or is not a file"):
        governance.load(env={"CHECKPOINT_POLICY_FILE": str(tmp_path / "nope.yaml")})
