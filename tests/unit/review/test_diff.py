"""The pure diff on built inputs: no HTTP, every rule one small case."""

from __future__ import annotations

import json
import math
import time

import pytest

from checkpoint.review.diff import (
    DISPLAY_LIMIT,
    ColumnSpec,
    DatasetInput,
    ModelDiff,
    Signature,
    Text,
    VersionInfo,
    compute_diff,
    parse_mlmodel,
    parse_requirements,
    wording,
)

XSS = "<img src=x onerror=alert(1)>"

# An MLmodel exactly as MLflow 3.17 writes it for mlflow.sklearn.log_model(signature=...).
MLMODEL = """\
artifact_path: mlflow-artifacts:/1/models/m-de093b2464854e97b054a9d2bb90c358/artifacts
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.skops
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
mlflow_version: 3.17.2
model_id: m-de093b2464854e97b054a9d2bb90c358
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "double",
    "name": "b", "required": true}, {"type": "long", "name": "c", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
"""


def cols(*specs: str) -> tuple[ColumnSpec, ...]:
    """``"a:double"`` → required column; ``"a:double?"`` → optional."""
    out = []
    for spec in specs:
        name, type_ = spec.split(":")
        out.append(ColumnSpec(name, type_.rstrip("?"), required=not type_.endswith("?")))
    return tuple(out)


SIG = Signature(inputs=cols("a:double", "b:double", "c:long"), outputs=cols("y:long"))


def info(version: str = "1", **kw) -> VersionInfo:
    """A fully read version (MLmodel and requirements known) unless the test says otherwise."""
    base = {"mlmodel_read": True, "signature": SIG, "flavors": ("python_function", "sklearn"), "requirements": {}}
    return VersionInfo(name="churn", version=version, **{**base, **kw})


def by_key(entries) -> dict:
    return {e.key: e for e in entries}


# -- params ------------------------------------------------------------------------------


def test_params_added_removed_changed_and_unchanged_folded():
    old = info("1", params={"C": "1.0", "penalty": "l2", "seed": "7", "solver": "lbfgs"})
    new = info("2", params={"C": "0.5", "penalty": "l2", "seed": "7", "max_iter": "200"})
    d = compute_diff(new, old).params
    assert [e.key for e in d.added] == ["max_iter"]
    assert [e.key for e in d.removed] == ["solver"]
    assert d.removed[0].challenger is None and d.removed[0].champion.full == "lbfgs"
    assert [(e.key, e.champion.full, e.challenger.full) for e in d.changed] == [("C", "1.0", "0.5")]
    assert d.counts == {"added": 1, "removed": 1, "changed": 1, "unchanged": 2}
    assert d.has_changes


def test_identical_params_have_no_changes():
    d = compute_diff(info("2", params={"a": "1"}), info("1", params={"a": "1"})).params
    assert not d.has_changes and d.counts["unchanged"] == 1


# -- metrics -----------------------------------------------------------------------------


def metric(diff: ModelDiff, key: str):
    return by_key(diff.metrics.changes)[key]


@pytest.mark.parametrize(
    ("key", "before", "after", "verdict"),
    [
        ("accuracy", 0.80, 0.85, "better"),
        ("accuracy", 0.85, 0.80, "worse"),
        ("val_loss", 0.30, 0.20, "better"),
        ("val_loss", 0.20, 0.30, "worse"),
        ("Train_LOSS", 0.20, 0.30, "worse"),  # direction patterns ignore case
        ("mean_squared_error", 4.0, 3.0, "better"),
        ("rmse", 2.0, 2.5, "worse"),
        ("test_mae", 1.0, 0.5, "better"),
        ("p99_latency_ms", 10.0, 12.0, "worse"),
        ("f1", 0.5, 0.5, "same"),
    ],
)
def test_metric_verdict_follows_direction(key, before, after, verdict):
    d = compute_diff(info("2", metrics={key: after}), info("1", metrics={key: before}))
    change = metric(d, key)
    assert change.verdict == verdict
    assert change.delta == pytest.approx(after - before)


def test_direction_patterns_are_configurable():
    old, new = info("1", metrics={"wer": 0.2, "loss": 1.0}), info("2", metrics={"wer": 0.1, "loss": 2.0})
    d = compute_diff(new, old, lower_is_better=("*wer*",))
    assert metric(d, "wer").verdict == "better" and metric(d, "wer").lower_is_better
    assert metric(d, "loss").verdict == "better" and not metric(d, "loss").lower_is_better  # now higher is better
    assert metric(compute_diff(new, old, lower_is_better="*wer*"), "wer").verdict == "better"  # one bare pattern


def test_relative_change_and_zero_champion():
    d = compute_diff(
        info("2", metrics={"acc": 0.9, "zero": 0.5, "both_zero": 0.0, "neg": -1.0}),
        info("1", metrics={"acc": 0.6, "zero": 0.0, "both_zero": 0.0, "neg": -2.0}),
    )
    assert metric(d, "acc").relative == pytest.approx(0.5)
    zero = metric(d, "zero")
    assert zero.relative is None and zero.delta == 0.5 and zero.verdict == "better"
    assert metric(d, "both_zero").verdict == "same" and metric(d, "both_zero").relative == 0.0
    assert metric(d, "neg").relative == pytest.approx(0.5)  # relative to |champion|


def test_new_and_gone_metrics_and_counts():
    d = compute_diff(info("2", metrics={"auc": 0.9, "acc": 0.7}), info("1", metrics={"acc": 0.8, "f1": 0.5}))
    assert metric(d, "auc").verdict == "new" and metric(d, "auc").champion is None
    assert metric(d, "f1").verdict == "gone" and metric(d, "f1").challenger is None
    assert d.metrics.counts == {"better": 0, "worse": 1, "same": 0, "new": 1, "gone": 1}
    assert [c.verdict for c in d.metrics.changes] == ["worse", "gone", "new"]  # bad news first


def test_nan_and_infinite_metrics_never_crash():
    nan, inf = float("nan"), float("inf")
    d = compute_diff(
        info("2", metrics={"a": nan, "b": 1.0, "c": nan, "d": inf, "e": inf}),
        info("1", metrics={"a": 1.0, "b": nan, "c": nan, "d": 1.0, "e": inf}),
    )
    assert metric(d, "a").verdict == "worse"
    assert metric(d, "b").verdict == "better"
    assert metric(d, "c").verdict == "same"
    assert metric(d, "d").verdict == "better" and metric(d, "d").delta is None
    assert metric(d, "e").verdict == "same"


def test_history_only_kept_when_more_than_one_step():
    old = info("1", metrics={"loss": 0.5, "acc": 0.8}, metric_histories={"loss": [(0, 0.9), (1, 0.5)], "acc": [(0, 0.8)]})
    new = info("2", metrics={"loss": 0.4, "acc": 0.9}, metric_histories={"loss": [(0, 0.8), (1, 0.6), (2, 0.4)]})
    d = compute_diff(new, old)
    assert metric(d, "loss").challenger_history == ((0, 0.8), (1, 0.6), (2, 0.4))
    assert metric(d, "loss").champion_history == ((0, 0.9), (1, 0.5))
    assert metric(d, "acc").champion_history == () and metric(d, "acc").challenger_history == ()


# -- tags --------------------------------------------------------------------------------


def test_mlflow_internal_tags_are_folded_apart():
    old = info("1", run_tags={"team": "risk", "mlflow.user": "ana", "mlflow.runName": "r1"})
    new = info("2", run_tags={"team": "fraud", "owner": "bo", "mlflow.user": "bo", "mlflow.runName": "r2"})
    d = compute_diff(new, old).run_tags
    assert [e.key for e in d.user.changed] == ["team"] and [e.key for e in d.user.added] == ["owner"]
    assert {e.key for e in d.internal.changed} == {"mlflow.user", "mlflow.runName"}
    assert not any(e.key.startswith("mlflow.") for e in d.user.added + d.user.changed + d.user.removed)


def test_version_tags_diffed_separately_from_run_tags():
    d = compute_diff(info("2", version_tags={"validated": "yes"}), info("1", version_tags={"validated": "no"}))
    assert [(e.champion.full, e.challenger.full) for e in d.version_tags.user.changed] == [("no", "yes")]
    assert not d.run_tags.user.has_changes


# -- values: size, unicode, HTML -----------------------------------------------------------


def test_huge_values_truncated_for_display_but_kept_whole():
    huge = "x" * 1_000_000
    d = compute_diff(info("2", params={"blob": huge}), info("1", params={"blob": "small"}))
    entry = d.params.changed[0]
    assert entry.challenger.full == huge
    assert entry.challenger.truncated and len(entry.challenger.display) == DISPLAY_LIMIT
    assert entry.challenger.display.endswith("…")
    assert not entry.champion.truncated and entry.champion.display == "small"


def test_unicode_keys_and_values_pass_through():
    value = "Zürich → 東京 🚀 עברית e\u0301"
    d = compute_diff(info("2", params={"städte": value}, metrics={"précision_✓": 0.9}), None)
    assert d.params.added[0].key == "städte" and d.params.added[0].challenger.full == value
    assert metric(d, "précision_✓").verdict == "new"
    long = Text.of("🚀" * 500, limit=10)
    assert long.display == "🚀" * 9 + "…" and long.full == "🚀" * 500


def test_html_in_values_is_plain_data():
    old = info("1", params={XSS: "1"}, run_tags={"note": "<b>bold</b>"})
    new = info("2", params={XSS: XSS}, run_tags={"note": XSS}, requirements={"evil": XSS})
    d = compute_diff(new, old)
    assert d.params.changed[0].key == XSS and d.params.changed[0].challenger.display == XSS
    assert d.run_tags.user.changed[0].challenger.full == XSS
    dumped = json.dumps(d.to_json(), ensure_ascii=False)
    assert XSS in dumped and "&lt;" not in dumped and "&amp;" not in dumped


# -- signature ---------------------------------------------------------------------------


def sig_diff(old: Signature | None, new: Signature | None, **kw):
    return compute_diff(info("2", signature=new, **kw), info("1", signature=old)).signature


def test_removed_input_column_is_breaking():
    d = sig_diff(SIG, Signature(inputs=cols("a:double", "b:double"), outputs=cols("y:long")))
    assert d.breaking
    [change] = d.changes
    assert (change.section, change.key, change.change, change.breaking) == ("inputs", "c", "removed", True)
    assert d.unchanged == 3


def test_retyped_input_is_breaking():
    d = sig_diff(SIG, Signature(inputs=cols("a:double", "b:string", "c:long"), outputs=cols("y:long")))
    [change] = d.changes
    assert change.change == "changed" and change.breaking and "double → string" in change.reason


def test_any_output_change_is_breaking():
    d = sig_diff(SIG, Signature(inputs=SIG.inputs, outputs=cols("y:double")))
    assert d.breaking and d.changes[0].section == "outputs"
    d = sig_diff(SIG, Signature(inputs=SIG.inputs, outputs=cols("y:long", "proba:double?")))
    assert d.breaking and d.changes[0].change == "added"


def test_added_optional_input_is_not_breaking_but_required_is():
    optional = sig_diff(SIG, Signature(inputs=SIG.inputs + cols("d:double?"), outputs=SIG.outputs))
    assert not optional.breaking and optional.changes[0].change == "added"
    required = sig_diff(SIG, Signature(inputs=SIG.inputs + cols("d:double"), outputs=SIG.outputs))
    assert required.breaking and "must now send" in required.changes[0].reason


def test_required_flag_changes():
    relaxed = sig_diff(SIG, Signature(inputs=cols("a:double?", "b:double", "c:long"), outputs=SIG.outputs))
    assert not relaxed.breaking and relaxed.changes[0].reason.endswith("now optional")
    old = Signature(inputs=cols("a:double?"), outputs=SIG.outputs)
    tightened = sig_diff(old, Signature(inputs=cols("a:double"), outputs=SIG.outputs))
    assert tightened.breaking


def test_unnamed_tensor_specs_compared_by_position():
    t = ColumnSpec("", "tensor<float32>[-1, 4]")
    d = sig_diff(Signature(inputs=(t,)), Signature(inputs=(ColumnSpec("", "tensor<float64>[-1, 4]"),)))
    assert d.breaking and d.changes[0].key == "#0"


def test_lost_signature_is_breaking_gained_is_noted():
    lost = sig_diff(SIG, None)
    assert lost.breaking and lost.challenger_state == "absent" and lost.notes
    gained = sig_diff(None, SIG)
    assert not gained.breaking and gained.champion_state == "absent" and "adds a signature" in gained.notes[0]
    assert {c.change for c in gained.changes} == {"added"} and not any(c.breaking for c in gained.changes)
    neither = sig_diff(None, None)
    assert not neither.breaking and neither.notes == ["neither version has a signature"]


def test_unreadable_mlmodel_makes_signature_unknown_not_breaking():
    d = compute_diff(info("2", mlmodel_read=False, signature=None, flavors=()), info("1"))
    assert d.signature.challenger_state == "unknown" and not d.signature.breaking
    assert "could not be read" in d.signature.notes[0]
    assert d.flavors is None


# -- requirements and flavours -------------------------------------------------------------


def test_parse_requirements_tolerates_real_world_lines():
    text = "\n".join(
        [
            "# generated",
            "mlflow==3.17.2",
            "Scikit_Learn >= 1.4, <2  # pinned for skops",
            "pandas[performance]==2.2.1; python_version >= '3.11'",
            "-r base.txt",
            "--extra-index-url https://user:secret@pypi.example.com/simple",
            "mypkg @ https://files.example.com/mypkg-1.0-py3-none-any.whl",
            "git+https://github.com/org/tool.git@v2#egg=tool",
            "https://example.com/bare.tar.gz",
            "numpy>=1.20,\\",
            "    <3",
            "",
        ]
    )
    reqs = parse_requirements(text)
    assert reqs["mlflow"] == "==3.17.2"
    assert reqs["scikit-learn"] == ">= 1.4, <2"
    assert reqs["pandas"] == "[performance]==2.2.1; python_version >= '3.11'"
    assert reqs["mypkg"] == "@ https://files.example.com/mypkg-1.0-py3-none-any.whl"
    assert reqs["tool"] == "git+https://github.com/org/tool.git@v2#egg=tool"
    assert reqs["numpy"] == ">=1.20, <3"
    assert "-r base.txt" in reqs and "https://example.com/bare.tar.gz" in reqs
    assert "--extra-index-url https://***@pypi.example.com/simple" in reqs
    assert not any("secret" in k or "secret" in v for k, v in reqs.items())
    assert not any(k.startswith("#") for k in reqs)


def test_requirement_version_changes():
    old = info("1", requirements={"scikit-learn": "==1.4.2", "numpy": ">=1.20", "xgboost": "==2.0"})
    new = info("2", requirements={"scikit-learn": "==1.5.0", "numpy": ">=1.20", "lightgbm": "==4.3"})
    d = compute_diff(new, old).requirements
    assert [(e.key, e.champion.full, e.challenger.full) for e in d.changed] == [("scikit-learn", "==1.4.2", "==1.5.0")]
    assert [e.key for e in d.added] == ["lightgbm"] and [e.key for e in d.removed] == ["xgboost"]
    assert d.counts["unchanged"] == 1


def test_unknown_requirements_give_no_requirement_diff():
    assert compute_diff(info("2", requirements=None), info("1")).requirements is None
    assert compute_diff(info("2"), info("1", requirements=None)).requirements is None


def test_flavor_diff():
    d = compute_diff(info("2", flavors=("python_function", "xgboost")), info("1")).flavors
    assert (d.added, d.removed, d.common) == (["xgboost"], ["sklearn"], ["python_function"])


def test_parse_mlmodel_as_mlflow_3_writes_it():
    signature, flavors = parse_mlmodel(MLMODEL)
    assert flavors == ("python_function", "sklearn")
    assert signature.inputs == cols("a:double", "b:double", "c:long")
    assert signature.outputs == (ColumnSpec("", "tensor<int64>[-1]"),)
    assert signature.params == ()


def test_parse_mlmodel_without_signature_and_with_params():
    assert parse_mlmodel("flavors:\n  python_function: {}\n") == (None, ("python_function",))
    params = '[{"name": "temperature", "type": "double", "default": 0.5, "shape": null}]'
    signature, _ = parse_mlmodel(f"flavors: {{}}\nsignature:\n  inputs: '[{{\"type\": \"string\"}}]'\n  params: '{params}'\n")
    assert signature.params == (ColumnSpec("temperature", 'double {"default": 0.5}'),)
    assert signature.inputs == (ColumnSpec("", "string"),)


@pytest.mark.parametrize("text", ["[unclosed", "- just\n- a list\n", "signature:\n  inputs: '{not json'\n"])
def test_parse_mlmodel_rejects_garbage_with_value_error(text):
    with pytest.raises(ValueError, match="MLmodel|signature"):
        parse_mlmodel(text)


# -- first promotion, provenance, problems --------------------------------------------------


def test_first_promotion_puts_everything_on_the_challenger_side():
    new = info(
        "1",
        params={"C": "1"},
        metrics={"loss": 0.1},
        run_tags={"team": "x", "mlflow.user": "ana"},
        requirements={"numpy": "==2.0"},
        datasets=(DatasetInput("train", "abc"),),
    )
    d = compute_diff(new, None)
    assert d.first_promotion and d.champion is None and d.provenance.champion is None
    assert [e.key for e in d.params.added] == ["C"]
    assert metric(d, "loss").verdict == "new"
    assert [e.key for e in d.requirements.added] == ["numpy"]
    assert [e.key for e in d.run_tags.internal.added] == ["mlflow.user"]
    assert d.signature.champion_state == "none" and not d.signature.breaking
    assert {c.change for c in d.signature.changes} == {"added"} and len(d.signature.changes) == 4
    assert d.flavors.added == ["python_function", "sklearn"] and d.flavors.removed == []
    assert d.provenance.datasets_added == [DatasetInput("train", "abc")]
    removed = d.params.removed + d.requirements.removed + d.run_tags.user.removed + d.run_tags.internal.removed
    assert removed == [] and d.metrics.counts["gone"] == 0


def test_provenance_side_by_side():
    old = info(
        "1",
        run_id="r1",
        source="models:/m-aaa",
        run_tags={"mlflow.source.git.commit": "1111", "mlflow.source.name": "train.py"},
        datasets=(DatasetInput("train", "d1", context="training"), DatasetInput("eval", "e1", context="eval")),
    )
    new = info(
        "2",
        run_id="r2",
        source="models:/m-bbb",
        run_tags={"mlflow.source.git.commit": "2222", "mlflow.source.name": "train.py"},
        datasets=(DatasetInput("train", "d2", context="training"), DatasetInput("eval", "e1", context="eval")),
    )
    p = compute_diff(new, old).provenance
    assert (p.champion.git_commit, p.challenger.git_commit) == ("1111", "2222")
    assert p.challenger.model_id == "m-bbb" and p.challenger.entry_point == "train.py"
    assert set(p.changed) == {"source", "run_id", "model_id", "git_commit"}
    assert [d.digest for d in p.datasets_added] == ["d2"] and [d.digest for d in p.datasets_removed] == ["d1"]


def test_problems_are_carried_per_side():
    d = compute_diff(info("2", problems=["MLmodel could not be read"]), info("1", problems=["run gone"]))
    assert d.challenger_problems == ["MLmodel could not be read"] and d.champion_problems == ["run gone"]


def test_to_json_is_plain_json():
    d = compute_diff(info("2", params={"a": "1"}, metrics={"m": 1.0}), info("1", metrics={"m": math.nan}))
    data = json.loads(json.dumps(d.to_json(), allow_nan=True))
    assert data["params"]["added"][0]["challenger"]["full"] == "1"
    assert data["breaking"] is False and data["first_promotion"] is False


# -- size --------------------------------------------------------------------------------


def test_two_thousand_params_and_metrics_per_side():
    """Not a timed assertion: the time is printed (run with -s) for the record."""
    n = 2000
    old = info(
        "1",
        params={f"param_{i}": str(i) for i in range(n)},
        metrics={f"metric_{i}_loss" if i % 2 else f"metric_{i}": i / 7 for i in range(n)},
        run_tags={f"tag_{i}": "v" for i in range(200)},
    )
    new = info(
        "2",
        params={f"param_{i}": str(i if i % 10 else -i) for i in range(100, n + 100)},
        metrics={f"metric_{i}_loss" if i % 2 else f"metric_{i}": i / 7 + (i % 3) for i in range(100, n + 100)},
        run_tags={f"tag_{i}": "w" for i in range(200)},
    )
    start = time.perf_counter()
    d = compute_diff(new, old)
    elapsed = time.perf_counter() - start
    print(f"\ncompute_diff, {n} params x {n} metrics per side: {elapsed * 1000:.1f} ms")
    assert d.params.counts == {"added": 100, "removed": 100, "changed": 190, "unchanged": 1710}
    assert sum(d.metrics.counts.values()) == n + 100
    assert d.metrics.counts["new"] == 100 and d.metrics.counts["gone"] == 100


# -- words: the line above a section and its rows agree ----------------------------------------


def test_a_tag_only_the_champion_carries_is_not_called_removed():
    """The demo's case: v1 was validated, v3 never was; v3's run was trained on another dataset."""
    champion = info("1", version_tags={"validation_status": "passed", "team": "fraud"}, run_tags={"dataset": "april"})
    challenger = info("3", version_tags={"team": "fraud"}, run_tags={"dataset": "may"})
    d = compute_diff(challenger, champion)
    (only_champion,) = d.version_tags.user.removed
    assert only_champion.key == "validation_status"
    assert wording.row_label("version_tags", "removed") == "− only on the champion"
    assert wording.absent("version_tags") == "not set"
    assert wording.section_line("version_tags", d.version_tags.user) == "1 only on the champion · 1 the same on both."
    # The run tags table has its own line: it never sits under a "no tag changed" sentence.
    assert wording.section_line("run_tags", d.run_tags.user) == "1 differs."
    assert wording.row_label("run_tags", "changed") == "~ differs"


def test_parameters_keep_added_removed_changed():
    d = compute_diff(info("2", params={"C": "0.5", "max_iter": "200"}), info("1", params={"C": "1.0", "seed": "7"}))
    assert [wording.row_label("params", k) for k in wording.KINDS] == ["+ added", "− removed", "~ changed"]
    assert wording.section_line("params", d.params) == "1 added · 1 removed · 1 changed."


@pytest.mark.parametrize(
    ("section", "old", "new", "first", "line"),
    [
        ("version_tags", {"a": "1", "b": "2"}, {"a": "1", "b": "2"}, False, "No version tag differs (2 the same on both)."),
        ("version_tags", {}, {}, False, "Neither version has version tags."),
        ("version_tags", None, {}, True, "The challenger has no version tags."),
        ("version_tags", None, {"a": "1"}, True, "1 version tag on the challenger (no champion to compare)."),
        (
            "run_tags",
            {"a": "1", "b": "2"},
            {"a": "1", "b": "3", "c": "4"},
            False,
            "1 only on the challenger · 1 differs · 1 the same on both.",
        ),
        ("run_tags", {"a": "1", "b": "2"}, {"a": "0", "b": "3"}, False, "2 differ."),
        ("params", {"C": "1"}, {"C": "1"}, False, "No parameter changed (1 unchanged)."),
    ],
)
def test_section_lines(section, old, new, first, line):
    key = {"params": "params"}.get(section, section)
    champion = None if old is None else info("1", **{key: old})
    d = compute_diff(info("2", **{key: new}), champion)
    kd = d.params if section == "params" else getattr(d, section).user
    assert wording.section_line(section, kd, first) == line


def test_an_unreadable_section_says_so():
    assert wording.section_line("requirements", None) == "Requirements: not readable for one side."


def test_a_first_promotion_sets_tags_rather_than_adding_them():
    assert wording.row_label("version_tags", "added", first_promotion=True) == "+ set"
    assert wording.row_label("version_tags", "added") == "+ only on the challenger"


def test_the_page_labels_each_tags_table_and_says_not_set():
    """The real template: version and run tags each under their own heading, rows in the line's words."""
    from flask import Flask, render_template

    from checkpoint.web.ui import bp

    champion = info("1", version_tags={"validation_status": "passed"}, run_tags={"dataset": "april", "team": "fraud"})
    challenger = info("3", version_tags={}, run_tags={"dataset": "may", "team": "fraud"})
    app = Flask("checkpoint.web")
    app.register_blueprint(bp)
    with app.test_request_context():
        html = render_template("ui/_diff.html", diff=compute_diff(challenger, champion))
    tags = html[html.index('id="diff-tags"') : html.index('id="diff-provenance"')]  # past the section nav
    version_part = tags[tags.index("Version tags") : tags.index("Run tags")]
    run_part = tags[tags.index("Run tags") :]
    assert "1 only on the champion." in version_part and "− only on the champion" in version_part
    assert "not set" in version_part and "− removed" not in version_part
    assert "No version tag" not in html
    assert "1 differs · 1 the same on both." in run_part and "~ differs" in run_part and "dataset" in run_part


def test_the_diff_in_one_line_uses_the_sections_words():
    champion = info(
        "1",
        params={"C": "1.0", "seed": "7"},
        metrics={"auc": 0.9, "loss": 0.3, "f1": 0.8},
        version_tags={"validation_status": "passed"},
        run_tags={"dataset": "april"},
    )
    challenger = info(
        "3",
        params={"C": "0.5", "seed": "7"},
        metrics={"auc": 0.85, "loss": 0.2, "f1": 0.7},
        signature=Signature(inputs=cols("a:double", "b:double"), outputs=cols("y:long")),
        run_tags={"dataset": "may"},
    )
    line = wording.summary_line(compute_diff(challenger, champion))
    assert line == (
        "1 breaking signature change · 2 metrics worse, 1 better · 1 parameter changed · requirements unchanged"
        " · 1 version tag only on the champion · 1 run tag differs"
    )


def test_the_one_line_of_a_quiet_diff_and_of_a_first_promotion():
    same = info("2", params={"C": "1"}, metrics={"auc": 0.9})
    assert wording.summary_line(compute_diff(same, info("1", params={"C": "1"}, metrics={"auc": 0.9}))) == (
        "signature unchanged · metrics the same · parameters unchanged · requirements unchanged"
    )
    assert wording.summary_line(compute_diff(same, None)) == "first promotion: no champion to compare with"
    unread = compute_diff(info("2", mlmodel_read=False, requirements=None), info("1"))
    assert (
        wording.summary_line(unread) == "signature not readable · no metrics · parameters unchanged · requirements not readable"
    )
