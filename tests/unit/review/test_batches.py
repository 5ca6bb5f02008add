"""The pure parts of batch requests: reading the client's changes, how rules and statuses
combine, and what undoes one change (read from a registry stand-in holding MLflow's state)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from checkpoint.registry import RegistryError, Version
from checkpoint.review import batches, changes
from checkpoint.review.policy import Rule, Status
from checkpoint.review.statuses import RequiredStatus
from checkpoint.review.workflow_base import WorkflowError

ALIAS = {"kind": "set_alias", "name": "m", "alias": "champion", "version": "2"}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "non-empty list"),
        ({"kind": "set_alias"}, "non-empty list"),
        ([ALIAS, {"kind": "rename", "name": "m", "new_name": "n"}], r"changes\[1\]: a rename change cannot be undone"),
        ([ALIAS, {"kind": "delete_model", "name": "m"}], r"changes\[1\]: a delete_model change cannot be undone"),
        ([{"kind": "set_alias", "name": "m"}], r"changes\[0\]: "),
        ([ALIAS, ALIAS], r"changes\[1\]: .*same target as changes\[0\]"),
        ([ALIAS] * 101, "at most 100"),
    ],
)
def test_bad_lists_are_refused_naming_the_index(items, message):
    with pytest.raises(WorkflowError, match=message) as caught:
        batches.parse_all(items)
    assert caught.value.status == 400


def test_every_change_is_parsed_in_order():
    items = batches.parse_all(
        [ALIAS, {"kind": "transition", "name": "n", "version": "3", "stage": "production"}, {**ALIAS, "alias": "challenger"}]
    )
    assert [c.kind for c in items] == ["set_alias", "transition", "set_alias"]
    assert items[1].stage == "Production"  # canonical, as a single request's change


def test_the_strictest_rule_asks_the_most_of_the_batch():
    loose = Rule(name="loose", required_approvals=1, allow_self_approval=True)
    strict = Rule(
        name="strict",
        reviewers=("carol",),
        required_approvals=2,
        approvals_expire_after=timedelta(days=1),
        required_statuses=(RequiredStatus("ci/eval"),),
    )
    both = batches.strictest([loose, strict, loose])
    assert both.name == "loose + strict"
    assert both.required_approvals == 2 and not both.allow_self_approval
    assert both.approvals_expire_after == timedelta(days=1)
    assert [s.context for s in both.required_statuses] == ["ci/eval"]
    assert batches.strictest([loose, loose]) is loose
    assert (
        batches.strictest([loose, Rule(name="all", reviewers=("a", "b"), required_approvals="all")]).required_approvals == "all"
    )


def test_a_batch_stands_where_its_least_met_change_stands():
    met = Status(count=1, required=1, approvers=("alice",), awaited=())
    short = Status(count=1, required=2, approvers=("alice",), awaited=("carol",), blocked_by=("2. auc",))
    both = batches.combine([met, short])
    assert (both.count, both.required, both.met) == (1, 2, False)
    assert both.awaited == ("carol",) and both.blocked_by == ("2. auc",)
    assert batches.combine([met, met]).met


class Held:
    """MLflow's state for the undo reads: aliases, versions (stage, tags), model tags."""

    def __init__(self):
        self.aliases = {"champion": "1"}
        self.versions = {"1": ("Production", {"k": "old"}), "2": ("None", {}), "3": ("Production", {})}
        self.model_tags = {}
        self.exists = True
        self.sources: dict[str, str] = {}

    def _v(self, number):
        stage, tags = self.versions[number]
        return Version("m", number, stage, (), "run", self.sources.get(number, "src"), tags, 0)

    def alias_holder(self, name, alias):
        return self._v(self.aliases[alias]) if alias in self.aliases else None

    def version(self, name, version):
        return self._v(version)

    def stage_holders(self, name, stage):
        return [self._v(n) for n, (s, _) in self.versions.items() if s == stage]

    def model(self, name):
        if not self.exists:
            raise RegistryError(404, "RESOURCE_DOES_NOT_EXIST", "no model")
        return type("M", (), {"tags": self.model_tags})()

    def latest_version(self, name):
        return self._v(max(self.versions, key=int))

    def search_versions(self, filter_string):
        return [self._v(n) for n in self.versions]

    # Writes, as MLflow answers them (the state is not changed but for a new version).
    def create_model(self, name):
        self.exists = True

    def create_version(self, body):
        number = str(max(map(int, self.versions)) + 1)
        self.versions[number], self.sources[number] = ("None", {}), body["source"]
        return self._v(number)

    def set_alias(self, name, alias, version):
        self.aliases[alias] = version

    def transition_stage(self, *args):
        pass

    def delete_version_tag(self, *args):
        pass


def test_undo_puts_back_what_mlflow_held_before():
    held = Held()
    assert batches.undo(changes.SetAlias("m", alias="champion", version_="2"), held).steps == (
        changes.SetAlias("m", alias="champion", version_="1"),
    )
    assert batches.undo(changes.SetAlias("m", alias="challenger", version_="2"), held).steps == (
        changes.DeleteAlias("m", alias="challenger"),
    )
    moved = batches.undo(changes.Transition("m", version_="2", stage="Production", archive_existing_versions=True), held)
    assert moved.steps == (
        changes.Transition("m", version_="2", stage="None"),
        changes.Transition("m", version_="1", stage="Production"),
        changes.Transition("m", version_="3", stage="Production"),
    )
    assert batches.undo(changes.SetTag("m", version_="1", key="k", value="new"), held).steps == (
        changes.SetTag("m", version_="1", key="k", value="old"),
    )
    assert batches.undo(changes.SetTag("m", key="k", value="v"), held).steps == (changes.DeleteTag("m", key="k"),)


def test_a_copy_is_undone_by_deleting_exactly_the_version_it_created_and_a_model_it_created():
    held = Held()
    copy = changes.CreateVersion("m", source="models:/src/1", resolved="models:/src/1")
    assert batches.undo(copy, held).steps == ()
    result, after = batches.apply(copy, held)
    # MLflow answered v4; another account registered v5 right after: v4 is the one to delete.
    held.versions["5"] = ("None", {})
    assert after.steps == (changes.DeleteVersion("m", version_="4"),) and after.expect == (("models:/src/1", "run"),)
    assert result == "'m' version 4 created from models:/src/1"
    assert batches.held(after.steps[0], held) == ("models:/src/1", "run")
    held.exists = False
    assert batches.undo(copy, held).steps == (changes.DeleteModel("m"),)
    _, fresh = batches.apply(copy, held)
    assert fresh.steps == (changes.DeleteVersion("m", version_="6"), changes.DeleteModel("m")) and fresh.expect[1] == ()


def test_each_undo_step_expects_what_its_change_left():
    held = Held()
    _, alias = batches.apply(changes.SetAlias("m", alias="champion", version_="2"), held)
    assert alias.expect == ("2",) and batches.held(alias.steps[0], held) == "2"
    held.aliases["champion"] = "3"  # somebody moved it since
    assert batches.held(alias.steps[0], held) == "3"
    _, stage = batches.apply(changes.Transition("m", version_="2", stage="Production", archive_existing_versions=True), held)
    assert stage.expect == ("production", "archived", "archived")
    _, tag = batches.apply(changes.DeleteTag("m", version_="1", key="k"), held)
    assert tag.expect == (None,)


def test_a_batch_binds_its_statuses_and_reviews_to_every_change_s_files():
    from dataclasses import replace as with_fields
    from datetime import UTC, datetime

    from checkpoint.storage.entities import PromoteRequest

    now = datetime(2026, 12, 4, tzinfo=UTC)
    single = PromoteRequest(1, "set_alias", "m", "2", "alias:champion", ALIAS, "t", "", "a", "open", "",
                            {"digest": "d1"}, None, now, now, None, "")  # fmt: skip
    parts = ({"change": ALIAS, "challenger": {"digest": "d1"}}, {"change": ALIAS, "challenger": {"digest": "d2"}})
    batch = with_fields(single, changes=parts)
    assert batches.digest(single) == "d1"
    assert batches.digest(batch) not in (None, "d1", "d2")
    relogged = with_fields(single, changes=(parts[0], {"change": ALIAS, "challenger": {"digest": "d3"}}))
    assert batches.digest(relogged) != batches.digest(batch)  # the second change's files changed
    assert batches.digest(with_fields(single, changes=({"change": ALIAS, "challenger": {}},))) is None
