"""axe-core (the copy axe-playwright-python ships) run on a page in the browser tests: the
serious and critical findings fail the test, each named with the elements it found."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

FAILING = ("serious", "critical")


def findings(page, impacts: tuple[str, ...] = FAILING) -> list[dict]:
    """axe's violations on ``page`` of those impacts (the whole document, every WCAG A/AA rule)."""
    results = Axe().run(page, options={"resultTypes": ["violations"]})
    return [v for v in results.response["violations"] if v.get("impact") in impacts]


def describe(found: list[dict]) -> str:
    lines = []
    for violation in found:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        lines += [f"    {' '.join(node['target'])}: {node['failureSummary']}" for node in violation["nodes"][:5]]
    return "\n".join(lines)


def assert_accessible(page, where: str) -> None:
    """No serious or critical axe-core violation on ``page`` (``where`` names it in the failure)."""
    found = findings(page)
    assert not found, f"axe-core on the {where}:\n{describe(found)}"
