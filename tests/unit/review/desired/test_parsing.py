"""Reading registry.yaml: wants with their lines, and every problem named by line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from checkpoint.review.desired import DesiredError, from_json, load

GOOD = """\
workspace: team-a
models:
  fraud-detector:
    aliases: {champion: 7, challenger: "9", retired: null}
  churn-model:
    workspace: default
    stages:
      production: 4
      Staging: ~
  prod.fraud-detector:
    copy_of: "fraud-detector@champion"
"""


def _shape(state):
    return [(w.model, w.workspace, w.kind, w.name, w.version, w.source) for w in state.wants]


def test_a_good_file_gives_each_target_with_its_line():
    state = load(GOOD, "registry.yaml")
    assert _shape(state) == [
        ("fraud-detector", "team-a", "alias", "champion", "7", ""),
        ("fraud-detector", "team-a", "alias", "challenger", "9", ""),
        ("fraud-detector", "team-a", "alias", "retired", None, ""),
        ("churn-model", "", "stage", "Production", "4", ""),
        ("churn-model", "", "stage", "Staging", None, ""),
        ("prod.fraud-detector", "team-a", "copy", "", None, "models:/fraud-detector@champion"),
    ]
    assert state.lines() == {
        ("fraud-detector", "alias", "champion"): 4,
        ("fraud-detector", "alias", "challenger"): 4,
        ("fraud-detector", "alias", "retired"): 4,
        ("churn-model", "stage", "Production"): 8,
        ("churn-model", "stage", "Staging"): 9,
        ("prod.fraud-detector", "copy", ""): 11,
    }


def test_the_json_form_reads_back_to_the_same_wants():
    state = load(GOOD, "registry.yaml")
    again = from_json(state.document())
    assert _shape(again) == _shape(state)
    assert all(w.line is None for w in again.wants)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:\n  m:\n    aliases:\n      champion: seven\n",
            'f.yaml:4: models.m.aliases.champion: expected a version number or null, got "seven"',
        ),
        (
            "models:\n  m:\n    aliases: {champion: yes}\n",
            'f.yaml:3: models.m.aliases.champion: expected a version number or null, got "yes"',
        ),
        (
            "models:\n  m:\n    aliases: {champion: 0}\n",
            'f.yaml:3: models.m.aliases.champion: expected a version number or null, got "0"',
        ),
        (
            "models:\n  m:\n    aliases: {champion: 1.5}\n",
            'f.yaml:3: models.m.aliases.champion: expected a version number or null, got "1.5"',
        ),
        ("models:\n  m:\n    aliases: [champion]\n", "f.yaml:3: models.m.aliases: expected a mapping, got a list"),
        (
            "models:\n  m:\n    stages: {Archived: 1}\n",
            "f.yaml:3: models.m.stages.Archived: unknown stage (expected one of Staging, Production)",
        ),
        (
            "models:\n  m:\n    stages: {Production: 1, production: 2}\n",
            "f.yaml:3: models.m.stages.production: stage Production is declared twice",
        ),
        (
            "models:\n  m:\n    tags: {a: b}\n",
            "f.yaml:3: models.m.tags: unknown key (expected one of aliases, stages, copy_of, workspace)",
        ),
        ("models:\n  m: {}\n", "f.yaml:2: models.m: declares nothing (give aliases, stages or copy_of)"),
        ("models:\n  m:\n", "f.yaml:2: models.m: expected a mapping, got null"),
        (
            "models:\n  m:\n    workspace: Team_A\n    aliases: {a: 1}\n",
            "f.yaml:3: models.m.workspace: Invalid workspace 'Team_A'",
        ),
        (
            "models:\n  m:\n    copy_of: 'models://host/x/1'\n",
            "f.yaml:3: models.m.copy_of: expected NAME@ALIAS, NAME/VERSION, NAME/STAGE or NAME/latest",
        ),
        (
            "models:\n  m:\n    copy_of: [a]\n",
            "f.yaml:3: models.m.copy_of: expected a model reference such as fraud-detector@champion, got a list",
        ),
        (
            "models:\n  m: {aliases: {a: 1}}\n  m: {aliases: {a: 2}}\n",
            "f.yaml:3: models.m: duplicate key (each target is declared once)",
        ),
        ("models:\n  m: &x {aliases: {a: 1}}\n  n: *x\n", "models.n: YAML aliases (*name) are not supported here"),
        ("modles:\n  m: {aliases: {a: 1}}\n", "f.yaml:1: modles: unknown key (expected one of models, workspace)"),
        ("workspace: team-a\n", "f.yaml:1: models: the file declares no models"),
        ("", "f.yaml:1: the file is empty"),
        ("models: {a: [\n", "f.yaml:2: not valid YAML"),
        ("- models\n", "f.yaml:1: expected a mapping, got a list"),
    ],
)
def test_each_problem_names_its_line_and_key(text, message):
    with pytest.raises(DesiredError) as raised:
        load(text, "f.yaml")
    assert message in raised.value.message
    assert raised.value.status == 400


def test_every_problem_is_reported_at_once():
    text = "models:\n  a:\n    aliases: {x: seven}\n  b:\n    stages: {Nope: 1}\n"
    with pytest.raises(DesiredError) as raised:
        load(text, "f.yaml")
    assert [(p.line, p.key) for p in raised.value.problems] == [(3, "models.a.aliases.x"), (5, "models.b.stages.Nope")]


def test_json_problems_have_keys_but_no_lines():
    with pytest.raises(DesiredError) as raised:
        from_json({"models": {"m": {"aliases": {"c": True}}}})
    assert raised.value.payload()["problems"] == [
        {"key": "models.m.aliases.c", "line": None, "message": 'expected a version number or null, got "True"'}
    ]
    with pytest.raises(DesiredError, match="expected a mapping, got null"):
        from_json(None)


def test_the_documented_example_reads():
    """docs/pipelines.md's registry.yaml is a file `checkpoint plan` accepts, as documented."""
    text = (Path(__file__).parents[4] / "docs" / "pipelines.md").read_text()
    example = re.search(r"```yaml\n(workspace: default.*?)```", text, re.S)
    assert example is not None
    state = load(example.group(1), "registry.yaml")
    assert [(w.model, w.kind, w.name, w.version) for w in state.wants] == [
        ("fraud-detector", "alias", "champion", "7"),
        ("fraud-detector", "alias", "challenger", "9"),
        ("fraud-detector", "alias", "canary", None),
        ("churn-model", "stage", "Production", "4"),
        ("prod.fraud-detector", "copy", "", None),
    ]
