"""A model's own environment (runtime/envs.py): which requirement lines may be installed, the
cache key, the Python version read from the model, and refusals before anything runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from checkpoint.runtime import envs, sandbox
from checkpoint.runtime.envs import EnvBuildError, Envs, allowed_requirements, env_key, python_version, with_evaluator_needs


def test_plain_requirements_are_kept_comments_and_blanks_dropped():
    text = "# written by MLflow\nmlflow==3.17.2\n\nscikit-learn[alldeps] >=1.4,<2 ; python_version >= '3.9'  # why\nnumpy\n"
    assert allowed_requirements(text) == [
        "mlflow==3.17.2",
        'scikit-learn[alldeps]<2,>=1.4; python_version >= "3.9"',
        "numpy",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "-e git+https://example.com/evil.git#egg=evil",
        "-r other.txt",
        "-c constraints.txt",
        "--index-url https://pypi.example.com/simple",
        "--extra-index-url https://pypi.example.com/simple",
        "--trusted-host pypi.example.com",
        "evil @ https://example.com/evil-1.0.tar.gz",
        "evil @ file:///tmp/evil",
        "git+https://example.com/evil.git",
        "https://example.com/evil-1.0-py3-none-any.whl",
        "./local/package",
        "/abs/path/evil.whl",
        "numpy \\",
        "not a requirement at all!",
    ],
)
def test_anything_but_a_plain_requirement_is_refused_naming_its_line(line):
    with pytest.raises(EnvBuildError, match=r"requirement line 2 not allowed"):
        allowed_requirements(f"mlflow\n{line}\n")


def test_too_many_lines_are_refused():
    with pytest.raises(EnvBuildError, match="over"):
        allowed_requirements("numpy\n" * (envs.MAX_LINES + 1))


def test_the_evaluator_s_own_needs_are_added_unless_named():
    added = with_evaluator_needs(["numpy"])
    assert added[0] == "numpy" and added[1].startswith("mlflow==") and added[2] == "pyarrow"
    assert with_evaluator_needs(["MLflow-Skinny==3.17.2", "PyArrow<20"]) == ["MLflow-Skinny==3.17.2", "PyArrow<20"]


def test_the_key_ignores_order_case_and_spacing_but_not_versions_or_python():
    key = env_key(["numpy==2.0", "mlflow==3.17.2"], "3.11")
    assert key == env_key(["MLflow == 3.17.2", "numpy==2.0"], "3.11")
    assert key != env_key(["numpy==2.1", "mlflow==3.17.2"], "3.11")
    assert key != env_key(["numpy==2.0", "mlflow==3.17.2"], "3.12")
    assert key != env_key(["numpy==2.0"], "3.11")
    assert len(key) == 32 and key.isalnum()


def test_python_version_is_the_minor_version_the_model_was_logged_with(tmp_path):
    assert python_version(tmp_path) == f"{sys.version_info.major}.{sys.version_info.minor}"  # no file: ours
    (tmp_path / "python_env.yaml").write_text("python: 3.10.14\nbuild_dependencies: [pip]\ndependencies: [-r requirements.txt]\n")
    assert python_version(tmp_path) == "3.10"
    for bad in ("python: latest\n", "python: [3]\n", "python: 3.10\nunknown_key: 1\n", "{{{"):
        (tmp_path / "python_env.yaml").write_text(bad)
        with pytest.raises(EnvBuildError, match="python_env.yaml"):
            python_version(tmp_path)


def _model(tmp_path: Path, requirements: str, python: str | None = None) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "requirements.txt").write_text(requirements)
    if python:
        (model / "python_env.yaml").write_text(f"python: {python}\n")
    return model


def _envs(tmp_path: Path) -> Envs:
    """Envs whose uv is a program that does not exist: a refusal must come before any use of it."""
    return Envs(tmp_path / "envs", str(tmp_path / "no-uv-here"), tmp_path / "uv-cache", sandbox.Limits(timeout=10))


def test_a_hostile_line_is_refused_before_uv_runs_or_anything_is_made(tmp_path):
    model = _model(tmp_path, "mlflow\n--index-url https://pypi.example.com/simple\nevil\n")
    with pytest.raises(EnvBuildError, match="requirement line 2 not allowed: '--index-url"):
        _envs(tmp_path).ensure(model)
    assert not (tmp_path / "envs").exists() and not (tmp_path / "uv-cache").exists()


def test_a_python_the_machine_lacks_is_a_clear_reason(tmp_path):
    model = _model(tmp_path, "mlflow\n", python="3.99.1")
    with pytest.raises(EnvBuildError, match=r"needs Python 3\.99 .* this machine has none"):
        _envs(tmp_path).ensure(model)
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]  # nothing built


def test_no_requirements_file_is_a_clear_reason(tmp_path):
    model = _model(tmp_path, "")
    (model / "requirements.txt").unlink()
    with pytest.raises(EnvBuildError, match="no requirements.txt"):
        _envs(tmp_path).ensure(model)


def test_a_build_past_its_deadline_is_a_clear_reason_and_leaves_nothing(tmp_path):
    model = _model(tmp_path, "mlflow\n")
    late = Envs(tmp_path / "envs", str(tmp_path / "no-uv-here"), tmp_path / "uv-cache", sandbox.Limits(timeout=0))
    with pytest.raises(EnvBuildError, match="timed out after 0 s"):
        late.ensure(model)
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]  # no environment, no build directory
