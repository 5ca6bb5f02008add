"""Each change kind in words, as the request page's "Asked for" row shows it: what a reviewer
reads instead of the stored JSON (issue 17 §4.4)."""

from __future__ import annotations

import pytest

from checkpoint.review.changes import KINDS, from_json, parse

CASES = [
    (
        {"kind": "set_alias", "name": "fraud-detector", "alias": "champion", "version": "3"},
        "set @champion of fraud-detector to v3",
    ),
    ({"kind": "delete_alias", "name": "fraud-detector", "alias": "champion"}, "remove @champion from fraud-detector"),
    (
        {"kind": "transition", "name": "fraud-detector", "version": "3", "stage": "production"},
        "move fraud-detector v3 to Production",
    ),
    (
        {
            "kind": "transition",
            "name": "fraud-detector",
            "version": "3",
            "stage": "Production",
            "archive_existing_versions": True,
        },
        "move fraud-detector v3 to Production, archiving the versions there",
    ),
    (
        {"kind": "create_version", "name": "prod.fraud-detector", "source": "models:/fraud-detector/2", "run_id": "r1"},
        "copy fraud-detector v2 into prod.fraud-detector as a new version",
    ),
    (
        {"kind": "create_version", "name": "prod.fd", "source": "models:/fd@champion"},
        "copy fd @champion into prod.fd as a new version",
    ),
    (
        {"kind": "create_version", "name": "fd", "source": "s3://bucket/model", "tags": [{"key": "stage", "value": "candidate"}]},
        "register a new version of fd from s3://bucket/model, tagged stage=candidate",
    ),
    ({"kind": "create_model", "name": "fd"}, "create registered model fd"),
    (
        {"kind": "create_model", "name": "fd", "tags": [{"key": "owner", "value": "ml"}]},
        "create registered model fd, tagged owner=ml",
    ),
    (
        {"kind": "set_tag", "name": "fd", "version": "2", "key": "validation", "value": "passed"},
        "set tag validation to 'passed' on fd v2",
    ),
    ({"kind": "set_tag", "name": "fd", "key": "team", "value": "risk"}, "set tag team to 'risk' on registered model fd"),
    ({"kind": "delete_tag", "name": "fd", "version": "2", "key": "validation"}, "remove tag validation from fd v2"),
    ({"kind": "delete_tag", "name": "fd", "key": "team"}, "remove tag team from registered model fd"),
    ({"kind": "delete_version", "name": "fd", "version": "4"}, "delete fd v4"),
    ({"kind": "delete_model", "name": "fd"}, "delete model fd and all its versions"),
    ({"kind": "rename", "name": "fd", "new_name": "fraud"}, "rename model fd to fraud"),
]


@pytest.mark.parametrize(("data", "words"), CASES)
def test_each_change_reads_as_a_sentence(data, words):
    change = parse(data)
    assert change.asked() == words
    assert from_json(change.to_json()).asked() == words  # the stored row reads the same


def test_every_kind_has_its_sentence():
    covered = {parse(data).kind for data, _ in CASES}
    assert covered == set(KINDS)
    assert all(cls.WORDS for cls in KINDS.values())


def test_a_pinned_moving_source_says_which_version_it_was():
    change = from_json(
        {"kind": "create_version", "name": "prod.fd", "source": "models:/fd@champion", "resolved": "models:/fd/7", "body": {}}
    )
    assert change.asked() == "copy fd @champion (v7 when the request opened) into prod.fd as a new version"


def test_the_words_leave_out_what_only_the_json_carries():
    change = parse(
        {
            "kind": "create_version",
            "name": "prod.fd",
            "source": "models:/fd/2",
            "run_id": "abc123",
            "run_link": "http://x/run",
            "description": "d",
        }
    )
    words = change.asked()
    assert "abc123" not in words and "run_link" not in words and "{" not in words
