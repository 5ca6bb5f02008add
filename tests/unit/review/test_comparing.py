"""Two versions compared (``review/comparing.py``): the references a caller may give (each bad one a 400
naming its field) and the promote requests that would put ``b`` where ``a`` is. Resolving against MLflow (and its
404s) is tried on a real server in tests/integration/test_compare.py."""

from __future__ import annotations

import pytest

from checkpoint.registry import Version
from checkpoint.review import comparing
from checkpoint.review.changes import CreateVersion, ModelsRef, SetAlias, Transition


def version(number: str, stage: str = "None", aliases: tuple[str, ...] = (), name: str = "fraud") -> Version:
    return Version(name, number, stage, aliases, f"run-{number}", f"s3://b/{number}", {}, 0)


@pytest.mark.parametrize(
    ("raw", "ref"),
    [
        ("7", ModelsRef(name="fraud", version="7")),
        (" 07 ", ModelsRef(name="fraud", version="7")),
        ("+3", ModelsRef(name="fraud", version="3")),
        ("@champion", ModelsRef(name="fraud", alias="champion")),
        ("production", ModelsRef(name="fraud", stage="Production")),
        ("Staging", ModelsRef(name="fraud", stage="Staging")),
        ("LATEST", ModelsRef(name="fraud")),
    ],
)
def test_references(raw, ref):
    assert comparing.parse_ref("fraud", raw, "a") == ref


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (None, "a is missing"),
        ("", "a is missing"),
        ("   ", "a is missing"),
        ("0", "numbered from 1"),
        ("-2", "numbered from 1"),
        ("@", "names no alias"),
        ("None", "give one version"),
        ("v3", "is not a version number (7), an alias (@champion)"),
        ("7\x00", "is not a version number"),
        ("9" * 300, "is not a version number"),
    ],
)
def test_bad_references_are_400_naming_the_field(raw, words):
    with pytest.raises(comparing.CompareError, match=words.replace("(", r"\(").replace(")", r"\)")) as raised:
        comparing.parse_ref("fraud", raw, "a")
    assert (raised.value.status, raised.value.error_code, raised.value.param) == (400, "INVALID_PARAMETER_VALUE", "a")


@pytest.mark.parametrize("name", ["", "  ", "a\nb", "x" * 600])
def test_model_names_no_model_can_have(name):
    with pytest.raises(comparing.CompareError) as raised:
        comparing.check_model_name(name, "b_model")
    assert (raised.value.status, raised.value.param) == (400, "b_model")


def test_b_takes_each_alias_and_the_stage_a_holds_the_asked_alias_first():
    a, b = version("1", "Production", ("archive", "champion", "safe")), version("3", "None", ("safe",))
    changes, held = comparing.propose(a, b, ModelsRef(name="fraud", alias="champion"), "team-b")
    assert changes == [
        SetAlias("fraud", alias="champion", version_="3", workspace="team-b"),
        SetAlias("fraud", alias="archive", version_="3", workspace="team-b"),
        Transition("fraud", version_="3", stage="Production", workspace="team-b"),
    ]
    assert held == ["@safe"]


@pytest.mark.parametrize(("stage", "offered"), [("None", False), ("Archived", False), ("Staging", True)])
def test_only_a_promoted_stage_is_offered(stage, offered):
    changes, held = comparing.propose(version("1", stage), version("2"), ModelsRef(name="fraud", version="1"), "")
    assert changes == ([Transition("fraud", version_="2", stage=stage)] if offered else []) and held == []


def test_b_holding_everything_a_holds_offers_nothing():
    same = version("1", "Production", ("champion",))
    assert comparing.propose(same, same, ModelsRef(name="fraud", version="1"), "") == ([], ["@champion", "Production"])


def test_across_models_b_is_copied_into_a_model_pinned():
    a, b = version("2", "Production", ("champion",), name="prod.fraud"), version("7", name="fraud")
    changes, held = comparing.propose(a, b, ModelsRef(name="prod.fraud", alias="champion"), "")
    assert changes == [CreateVersion("prod.fraud", source="models:/fraud/7")] and held == []
    assert changes[0].asked() == "copy fraud v7 into prod.fraud as a new version"
