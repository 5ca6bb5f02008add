"""The behavioural diff's pure parts: comparing predictions, summing both sides' runs up, and
reading a run's answer as untrusted data (review/behaviour/compare.py, runner.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from checkpoint.review.behaviour.compare import compare, is_classes, percentile, summarise
from checkpoint.review.behaviour.diffs import key_of
from checkpoint.review.behaviour.runner import read_answer
from checkpoint.runtime.sandbox import Outcome


def test_classes_are_compared_by_agreement():
    assert compare(["a", "b", "c", "d"], ["a", "x", "c", "d"]) == {
        "rows": 4,
        "kind": "classes",
        "agreement": 0.75,
        "disagreements": 1,
    }
    assert compare([1, 0, 1], [1, 0, 1])["agreement"] == 1.0
    assert is_classes([True, False]) and not is_classes([0.5, 1]) and not is_classes([])


def test_numbers_are_compared_by_absolute_difference_like_numpy():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=50), rng.normal(size=50)
    got = compare(a.tolist(), b.tolist())
    diffs = np.abs(a - b)
    assert got["kind"] == "numbers"
    assert got["mean_abs_diff"] == pytest.approx(diffs.mean())
    assert got["p95_abs_diff"] == pytest.approx(np.percentile(diffs, 95))
    assert got["max_abs_diff"] == pytest.approx(diffs.max())
    # Rows of probabilities are compared value by value.
    assert compare([[0.2, 0.8], [0.5, 0.5]], [[0.4, 0.6], [0.5, 0.5]])["max_abs_diff"] == pytest.approx(0.2)
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


@pytest.mark.parametrize(
    ("champion", "challenger", "problem"),
    [
        ([1.0, 2.0], [1.0], "2 vs 1 predictions"),
        ([[1.0, 2.0]], [[1.0]], "neither classes nor numbers"),
        (["a"], [1.5], "neither classes nor numbers"),
    ],
)
def test_predictions_that_cannot_be_compared_say_why(champion, challenger, problem):
    assert problem in compare(champion, challenger)["problem"]


def _answer(predictions: list, rows: int | None = None, seconds: float = 0.01) -> dict:
    return {"rows": rows if rows is not None else len(predictions), "predictions": predictions, "seconds": seconds}


def test_a_challenger_failing_on_the_champions_example_is_breaking():
    champion = {"load_seconds": 1.0, "examples": {"champion": _answer([1, 0]), "challenger": _answer([1, 1])}}
    challenger = {
        "load_seconds": 1.0,
        "examples": {"champion": {"error": "Traceback...\nMlflowException: missing column b"}, "challenger": _answer([1, 0])},
    }
    versions = {"champion": {"name": "m", "version": "1"}, "challenger": {"name": "m", "version": "2"}}
    state, reason, result = summarise({"champion": champion, "challenger": challenger}, versions)
    assert (state, reason) == ("done", "")
    assert result["breaking"] == ["the challenger fails on the champion's input example: MlflowException: missing column b"]
    inputs = {e["example"]: e for e in result["inputs"]}
    assert "comparison" not in inputs["champion"] and inputs["challenger"]["comparison"]["agreement"] == 0.5
    assert inputs["champion"]["champion"]["ms_per_row"] == pytest.approx(5.0)


def test_a_side_that_cannot_run_is_an_error_and_a_missing_champion_is_not():
    versions = {"champion": None, "challenger": {"name": "m", "version": "1"}}
    alone = {"load_seconds": 1.0, "examples": {"challenger": _answer([0.5])}}
    state, _, result = summarise({"champion": None, "challenger": alone}, versions)
    assert state == "done" and result["inputs"][0]["challenger"]["rows"] == 1 and "comparison" not in result["inputs"][0]
    state, reason, result = summarise({"champion": None, "challenger": {"error": "timed out after 5 s"}}, versions)
    assert state == "error" and reason == "the challenger could not be run: timed out after 5 s"
    assert result["breaking"] == ["the challenger could not be run: timed out after 5 s"]


def _outcome(output: bytes = b"", returncode: int | None = 0, problem: str = "", tail: str = "") -> Outcome:
    return Outcome(returncode, output, tail, 1.0, problem)


def test_a_good_answer_is_read():
    data = {"load": {"seconds": 2.5}, "examples": {"champion": _answer([1, 2]), "challenger": {"unreadable": "no example"}}}
    got = read_answer(_outcome(json.dumps(data).encode()), {"champion", "challenger"})
    assert got == {
        "load_seconds": 2.5,
        "examples": {"champion": _answer([1, 2]), "challenger": {"unreadable": "no example"}},
        "datasets": {},
    }


def test_a_datasets_answer_names_only_its_own_file():
    good = {"rows": 3, "seconds": 0.5, "file": "answers/holdout.json"}
    data = {"load": {"seconds": 1}, "examples": {}, "datasets": {"holdout": good, "recent": {"error": "x" * 5000}}}
    got = read_answer(_outcome(json.dumps(data).encode()), set(), {"holdout", "recent", "missing"})
    assert got["datasets"] == {
        "holdout": good,
        "recent": {"error": "x" * 2000},
        "missing": {"error": "no answer for this dataset"},
    }
    elsewhere = data | {"datasets": {"holdout": good | {"file": "/etc/shadow"}}}
    got = read_answer(_outcome(json.dumps(elsewhere).encode()), set(), {"holdout"})
    assert "names another file" in got["error"]


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (
            _outcome(problem="timed out after 5 s", returncode=-9, tail="a\nb\nlast words"),
            "timed out after 5 s: a | b | last words",
        ),
        (_outcome(returncode=-24), "the evaluator exited with status -24 (CPU time limit)"),
        (_outcome(b"not json"), "the evaluator's answer was malformed (JSONDecodeError"),
        (_outcome(b"[1, 2]"), "the evaluator's answer was malformed (TypeError"),
        (_outcome(b'{"load": {"error": "boom"}}'), "the model failed to load: boom"),
        (_outcome(b'{"load": {"seconds": "x"}, "examples": {}}'), "the evaluator's answer was malformed (TypeError"),
        (
            _outcome(b'{"load": {"seconds": 1}, "examples": {"champion": {"rows": 1, "predictions": "evil", "seconds": 1}}}'),
            "the evaluator's answer was malformed (TypeError: predictions must be a list",
        ),
    ],
)
def test_a_bad_answer_is_an_error_never_an_exception(outcome, error):
    got = read_answer(outcome, {"champion"})
    assert set(got) == {"error"} and got["error"].startswith(error), got


def _forged(load_seconds: object = 1.0, **example: object) -> Outcome:
    answer = {"rows": 2, "predictions": [1, 0], "seconds": 0.5, **example}
    return _outcome(json.dumps({"load": {"seconds": load_seconds}, "examples": {"champion": answer}}).encode())


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (_forged(load_seconds=float("nan")), "ValueError: a duration of nan s is not possible"),
        (_forged(load_seconds=float("inf")), "ValueError: a duration of inf s is not possible"),
        (_forged(seconds=-0.5), "ValueError: a duration of -0.5 s is not possible"),
        (_forged(seconds=10**9), "ValueError: a duration of 1000000000 s is not possible"),
        (_forged(seconds=True), "TypeError: a duration must be a number, not bool"),
        (_forged(seconds="0.5"), "TypeError: a duration must be a number, not str"),
        (_forged(rows=-1), "ValueError: -1 rows is not possible"),
        (_forged(rows=10**12), "ValueError: 1000000000000 rows is not possible"),
        (_forged(rows=2.0), "TypeError: rows must be a number, not float"),
        (_forged(rows=True), "TypeError: rows must be a number, not bool"),
        (_forged(predictions=list(range(1001))), "ValueError: 1,001 predictions is over the 1000 rows"),
        (_forged(predictions=[{"a": 1}]), "TypeError: a prediction must be a number"),
        (_forged(predictions=[[[1]]]), "TypeError: a prediction must be a number"),
        (_outcome(b'{"load": {"seconds": NaN}, "examples": {}}'), "ValueError: a duration of nan s"),
    ],
)
def test_a_forged_answer_is_an_error_with_its_reason(outcome, reason):
    """The answer comes from the model's own process: numbers no evaluator writes make the run an
    error, never a result."""
    got = read_answer(outcome, {"champion"})
    assert set(got) == {"error"} and got["error"].startswith(f"the evaluator's answer was malformed ({reason}"), got


def test_an_honest_answer_with_nan_predictions_and_probability_rows_is_kept():
    got = read_answer(_forged(predictions=[float("nan"), [0.2, 0.8]]), {"champion"})
    assert got["examples"]["champion"]["seconds"] == 0.5 and got["examples"]["champion"]["rows"] == 2


def test_the_key_names_both_contents_and_the_inputs():
    assert key_of("a" * 64, "b" * 64) == key_of("a" * 64, "b" * 64)
    assert (
        len({key_of("a" * 64, "b" * 64), key_of("b" * 64, "a" * 64), key_of(None, "b" * 64), key_of("a" * 64, "b" * 64, "x")})
        == 4
    )
