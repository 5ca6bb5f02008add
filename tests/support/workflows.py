"""The workflows and files docs/pipelines.md shows, taken from the document itself and run as
written, so the document cannot drift from what works.

``run_job`` plays the part of a GitHub Actions runner for a job's ``run`` steps, and only as far as
those documented jobs need: ``${{ ... }}`` expressions (``vars.*``, ``secrets.*``, ``github.*``,
``steps.<id>.outputs.*``; anything else fails the test, so the document cannot use what is not
played here), the job's ``env``, ``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY``, ``bash -e`` per
step (GitHub's default shell on Linux), and stopping at the first failing step unless a step says
``if: always()``. ``uses:`` steps (checkout, setup-python, upload-artifact) are the caller's
business: the checkout is the directory given, Python is this interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_EXPRESSION = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")


def blocks(language: str, text: str | None = None) -> list[str]:
    """The fenced blocks of docs/pipelines.md (or ``text``) in ``language``, in order."""
    return [body for lang, body in _FENCE.findall(text if text is not None else DOC.read_text()) if lang == language]


def block(language: str, first_line: str) -> str:
    """The one ``language`` block of docs/pipelines.md whose first line is ``first_line``."""
    found = [b for b in blocks(language) if b.splitlines()[0] == first_line]
    assert len(found) == 1, f"docs/pipelines.md should have one {language} block starting {first_line!r}, has {len(found)}"
    return found[0]


def workflow(name: str) -> dict:
    """The documented GitHub Actions workflow ``name`` (its ``name:`` line), parsed."""
    return yaml.safe_load(block("yaml", f"name: {name}"))


def triggers(flow: dict) -> dict:
    """A workflow's ``on``: YAML 1.1 reads the key as true (GitHub reads it as "on")."""
    return flow[True]


def installs_this_project(command: str) -> bool:
    """Whether a documented ``pip install ...`` installs this project (the job's other packages aside)."""
    (project,) = set(packages_distributions()["checkpoint"])
    words = command.split()
    return words[:2] == ["pip", "install"] and project in words[2:]


@dataclass
class Step:
    name: str
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Job:
    steps: list[Step]
    summary: str

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps)

    def step(self, name: str) -> Step:
        (found,) = [s for s in self.steps if s.name == name]
        return found

    def ran(self) -> list[str]:
        return [s.name for s in self.steps]


def _evaluate(text: str, context: dict, outputs: dict[str, dict[str, str]]) -> str:
    def value(match: re.Match) -> str:
        path = match.group(1).split(".")
        if path[0] == "steps" and len(path) == 4 and path[2] == "outputs":
            return outputs.get(path[1], {}).get(path[3], "")  # as GitHub: an unset output is empty
        if len(path) == 2 and path[0] in context and path[1] in context[path[0]]:
            return str(context[path[0]][path[1]])
        raise AssertionError(f"the test's runner does not know ${{{{ {match.group(1)} }}}}: give it in the context")

    return _EXPRESSION.sub(value, text)


def _outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as GitHub reads it (``key=value`` lines; a line without ``=`` fails the step there)."""
    found = {}
    for line in path.read_text().splitlines():
        assert "=" in line, f"GitHub would refuse this line of $GITHUB_OUTPUT (no key=value): {line!r}"
        key, value = line.split("=", 1)
        found[key] = value
    return found


def run_job(
    flow: dict,
    job: str,
    checkout: Path,
    context: dict,
    env: dict[str, str] | None = None,
    before: dict[str, Callable[[dict[str, dict[str, str]]], None]] | None = None,
    timeout: float = 300,
) -> Job:
    """Run the ``run`` steps of ``flow``'s ``job`` in ``checkout``; ``context`` gives ``vars``,
    ``secrets`` and ``github``; ``env`` overrides the job's env (e.g. a unique model name);
    ``before[name]`` is called with the outputs so far before the step ``name`` runs (what a
    person does meanwhile, e.g. a review). The step installing this project is checked, not
    run: this interpreter's environment has it."""
    spec = flow["jobs"][job]
    outputs: dict[str, dict[str, str]] = {}
    base = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **{k: _evaluate(str(v), context, outputs) for k, v in (spec.get("env") or {}).items()},
        **(env or {}),
    }
    summary = checkout / "step_summary.md"
    summary.write_text("")
    done: list[Step] = []
    failed = False
    for number, step in enumerate(spec["steps"]):
        if "run" not in step:
            continue
        name = step.get("name") or step["run"]
        if step["run"].startswith("pip install"):
            assert installs_this_project(step["run"]), f"the job installs something else than this project: {step['run']}"
            continue
        if failed and step.get("if") != "always()":
            continue
        if name in (before or {}):
            before[name](outputs)  # type: ignore[index]
        output = checkout / f"output-{number}"
        output.write_text("")
        script = _evaluate(step["run"], context, outputs)
        own = {k: _evaluate(str(v), context, outputs) for k, v in (step.get("env") or {}).items()}
        process = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=checkout,
            env={**base, **own, "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        found = _outputs(output)
        if "id" in step:
            outputs[step["id"]] = found
        done.append(Step(name, process.returncode, process.stdout, process.stderr, found))
        failed = failed or process.returncode != 0
    return Job(done, summary.read_text())
