"""Reading what isolated runs leave behind (``review/behaviour/datasets.py``): a predictions file
copied only as a plain file (never through a link), and the scorer's answer checked as data."""

from __future__ import annotations

import os

import pytest

from checkpoint.review.behaviour.datasets import LIST_MAX, checked, copy_answer
from checkpoint.review.behaviour.runner import EvaluationError


def test_a_plain_answer_file_is_copied(tmp_path):
    (tmp_path / "run" / "answers").mkdir(parents=True)
    (tmp_path / "run" / "answers" / "holdout.json").write_text('{"predictions": []}')
    copy_answer(tmp_path / "run", "holdout", tmp_path / "out.json")
    assert (tmp_path / "out.json").read_text() == '{"predictions": []}'


@pytest.mark.parametrize("link", ["file", "folder", "fifo"])
def test_a_link_or_special_file_left_by_a_model_is_not_followed(tmp_path, link):
    secret = tmp_path / "secret_key"
    secret.write_text("hunter2")
    run = tmp_path / "run"
    run.mkdir()
    if link == "folder":
        (tmp_path / "elsewhere").mkdir()
        os.symlink(secret, tmp_path / "elsewhere" / "holdout.json")
        os.symlink(tmp_path / "elsewhere", run / "answers")
    else:
        (run / "answers").mkdir()
        if link == "file":
            os.symlink(secret, run / "answers" / "holdout.json")
        else:
            os.mkfifo(run / "answers" / "holdout.json")
    with pytest.raises(EvaluationError, match="predictions on holdout"):
        copy_answer(run, "holdout", tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists() or "hunter2" not in (tmp_path / "out.json").read_text()


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), [0] * (LIST_MAX + 1), {1: 2}, {"a": [[[[[[[1]]]]]]]}, object()],
)
def test_the_scorers_answer_is_refused_unless_plain_bounded_finite_data(bad):
    with pytest.raises((ValueError, TypeError)):
        checked({"rows": 3, "x": bad})


def test_plain_data_passes_with_long_text_cut():
    assert checked({"rows": 3, "s": "x" * 900, "n": None, "l": [1.5, True]}) == {
        "rows": 3,
        "s": "x" * 500,
        "n": None,
        "l": [1.5, True],
    }
