"""The scorer (``runtime/evaluator_scoring.py``), run in-process on files written here: the numbers
against scikit-learn's own, and predictions files a hostile model could write refused plainly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from checkpoint.runtime import evaluator_scoring as scoring

ROWS = 40


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"a": rng.normal(size=ROWS), "country": ["fr", "de"] * (ROWS // 2), "y": rng.integers(0, 2, ROWS)})
    data.to_parquet("source.parquet")
    return tmp_path


def answer(name: str, predictions, probabilities=None, latency=(0.2, 0.4, 0.3)) -> str:
    with open(name, "w") as file:
        json.dump({"predictions": predictions, "probabilities": probabilities, "latency_ms": list(latency)}, file)
    return name


def prepare(**extra) -> dict:
    job = {"mode": "prepare", "source": "source.parquet", "format": ".parquet", "target": "y", "slices": ["country"]}
    return scoring.prepare(job | {"max_rows": ROWS} | extra)


def test_prepare_keeps_max_rows_and_keeps_the_target_from_the_models(folder):
    assert prepare(max_rows=30) == {"rows": 30, "columns": ["a", "country"]}
    assert list(pd.read_parquet("features.parquet").columns) == ["a", "country"]
    assert list(pd.read_parquet("labels.parquet").columns) == ["y", "country"]
    with pytest.raises(scoring.Refused, match="the dataset has no column nope"):
        prepare(target="nope")
    (folder / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(scoring.Refused, match="unreadable as parquet"):
        prepare(source="bad.parquet")


def test_classifier_numbers_match_scikit_learn(folder):
    prepare()
    y = pd.read_parquet("labels.parquet")["y"].to_numpy()
    rng = np.random.default_rng(1)
    p_old, p_new = rng.uniform(size=ROWS), rng.uniform(size=ROWS)
    old, new = (p_old > 0.5).astype(int), (p_new > 0.5).astype(int)
    answers = {
        "champion": answer("c.json", old.tolist(), [[1 - p, p] for p in p_old]),
        "challenger": answer("h.json", new.tolist(), [[1 - p, p] for p in p_new], latency=[1.0] * 10),
    }
    got = scoring.score({"mode": "score", "target": "y", "slices": ["country"], "answers": answers})
    assert got["kind"] == "classes" and got["agreement"] == pytest.approx(np.mean(old == new))
    assert got["metrics"]["roc_auc"]["challenger"] == pytest.approx(metrics.roc_auc_score(y, p_new))
    assert got["metrics"]["f1"]["delta"] == pytest.approx(metrics.f1_score(y, new) - metrics.f1_score(y, old))
    assert got["flips"]["0"].get("1", 0) == int(np.sum((old == 0) & (new == 1)))
    assert sum(got["histogram"]["counts"]) == ROWS and len(got["histogram"]["edges"]) == scoring.BINS + 1
    assert got["latency_ms"]["challenger"] == {"p50": 1.0, "p95": 1.0, "samples": 10}
    assert {s["value"] for s in got["slices"]} == {"fr", "de"} and sum(s["rows"] for s in got["slices"]) == ROWS
    assert got["rows_differ"] == int(np.sum(old != new)) and len(got["disagreements"]) == min(20, got["rows_differ"])
    json.dumps(got, allow_nan=False)  # plain, finite data


def test_regressor_numbers_match_numpy(folder):
    prepare()
    y = pd.read_parquet("labels.parquet")["y"].to_numpy().astype(float)
    old, new = np.linspace(0, 1, ROWS), np.linspace(0, 1, ROWS) ** 2
    answers = {"champion": answer("c.json", old.tolist()), "challenger": answer("h.json", new.tolist())}
    got = scoring.score({"target": "y", "slices": [], "answers": answers})
    assert got["mean_abs_diff"] == pytest.approx(np.mean(np.abs(new - old)))
    assert got["p95_abs_diff"] == pytest.approx(np.percentile(np.abs(new - old), 95))
    assert got["correlation"] == pytest.approx(np.corrcoef(old, new)[0, 1])
    assert got["metrics"]["rmse"]["challenger"] == pytest.approx(np.sqrt(np.mean((new - y) ** 2)))
    assert got["disagreements"][0]["row"] == int(np.argmax(np.abs(new - old)))


@pytest.mark.parametrize(
    ("predictions", "probabilities", "latency", "message"),
    [
        ([1] * (ROWS - 1), None, [0.1], r"gave 39 predictions for 40 rows"),
        ([1] * ROWS, None, [float("nan")], r"a latency of the challenger is not a finite number"),
        ([1] * ROWS, None, [float("inf")], r"not a finite number"),
        ([1] * ROWS, None, [-0.5], r"a latency of the challenger is negative"),
        ([1] * ROWS, None, [], r"latencies are missing or too many"),
        ([1] * ROWS, None, [0.1] * 1001, r"latencies are missing or too many"),
        ([1] * ROWS, [[0.5, 0.5]] * (ROWS - 1), [0.1], r"probabilities are not one row per prediction"),
        ([1] * ROWS, [[2.0, -1.0]] * ROWS, [0.1], r"a probability of the challenger is outside \[0, 1\]"),
        ([1] * ROWS, [[0.5]] * ROWS, [0.1], r"probabilities are not rows of 2 to 50 numbers"),
        ([float("nan")] * ROWS, None, [0.1], r"a prediction of the challenger is not a finite number"),
        ([{"x": 1}] * ROWS, None, [0.1], r"a prediction of the challenger is not a finite number"),
    ],
)
def test_a_hostile_predictions_file_is_refused(folder, predictions, probabilities, latency, message):
    prepare()
    answers = {"champion": answer("c.json", [1] * ROWS), "challenger": answer("h.json", predictions, probabilities, latency)}
    with pytest.raises(scoring.Refused, match=message):
        scoring.score({"target": "y", "slices": [], "answers": answers})


def test_classes_against_numbers_cannot_be_compared(folder):
    prepare()
    answers = {"champion": answer("c.json", [1] * ROWS), "challenger": answer("h.json", [0.5] * ROWS)}
    with pytest.raises(scoring.Refused, match="one model predicts classes, the other numbers"):
        scoring.score({"target": None, "slices": [], "answers": answers})
