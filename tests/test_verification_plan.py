"""Gate plan: verify.yaml schema and errors, source order, CI ingestion, default detection, the doc's examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentgate.models import GateSpec
from agentgate.verification.plan import (
    GatePlanError,
    VerifyYamlError,
    build_plan,
    ingest_workflows,
    parse_verify_yaml,
)
from agentgate.verification.report import Level
from agentgate.verification.workspace import plan_for_workspace
from tests.vhelpers import Repo

DOC = Path(__file__).resolve().parent.parent / "docs" / "verify-yaml.md"


def doc_examples() -> list[str]:
    return [m.group(1) for m in re.finditer(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]


def test_the_doc_has_examples():
    assert len(doc_examples()) >= 4


@pytest.mark.parametrize("index", range(len(doc_examples())))
def test_every_doc_example_loads(index):
    vf = parse_verify_yaml(doc_examples()[index], f"docs example {index}")
    assert vf.version == 1
    plan = build_plan(base_texts={"verify.yaml": doc_examples()[index]})
    assert plan.sources_used[0] == "verify.yaml"


def test_doc_error_example_is_the_real_message():
    text = "version: 1\ntests:\n  commands:\n    - run: pytest\n      timout: 3\n"
    with pytest.raises(VerifyYamlError) as err:
        parse_verify_yaml(text)
    assert str(err.value) in DOC.read_text()


@pytest.mark.parametrize(
    "text,line,key,words",
    [
        ("version: 1\nsanity:\n  max_file_kb: -1\n", 3, "sanity.max_file_kb", "greater than or equal"),
        ("version: 1\nskip_levels: [L9]\n", 2, "skip_levels[0]", "L0"),
        ("version: 1\nblackbox:\n  - run: x\n", 3, "blackbox[0].expect", "missing required key `expect`"),
        ("version: 1\nblackbox:\n  - run: x\n    expect:\n      - {contains: a, regex: b}\n", 5, None, "exactly one"),
        ("version: 1\ncontracts:\n  naming:\n    - files: '*.py'\n      pattern: '(['\n", 5, None, "regular"),
        ("version: 1\ntests:\n  commands: [ 'a'\n", None, None, "YAML syntax error"),
        ("version: 1\ntests: {}\ntests: {}\n", 3, "tests", "duplicate key"),
        ("- just a list\n", 1, None, "mapping"),
        ("", 1, None, "empty"),
        ("version: 1\ncontracts:\n  secretz: {}\n", 3, "contracts.secretz", "unknown key `secretz`"),
    ],
)
def test_invalid_verify_yaml_names_line_and_key(text, line, key, words):
    with pytest.raises(VerifyYamlError) as err:
        parse_verify_yaml(text, ".agentgate/verify.yaml")
    e = err.value
    assert ".agentgate/verify.yaml" in str(e)
    if line is not None:
        assert e.line == line, str(e)
    if key is not None:
        assert e.key == key, str(e)
    assert words in str(e)


def test_invalid_file_is_never_a_silent_fallback():
    with pytest.raises(VerifyYamlError):
        build_plan(inline_gates=[GateSpec(command="true")], base_texts={"verify.yaml": "version: 1\nbogus: 1\n"})


def test_both_verify_files_is_an_error():
    with pytest.raises(GatePlanError, match="keep one"):
        build_plan(base_texts={"verify.yaml": "version: 1\n", ".agentgate/verify.yaml": "version: 1\n"})


def test_auto_combines_inline_gates_and_verify_yaml():
    vy = "version: 1\nskip_levels: [L3]\ntests:\n  lint: ['ruff check .']\n"
    plan = build_plan(inline_gates=[GateSpec(command="pytest", timeout_seconds=5)], base_texts={"verify.yaml": vy})
    assert [(c.run, c.kind, c.origin) for c in plan.commands] == [
        ("pytest", "test", "work_order"),
        ("ruff check .", "lint", "verify.yaml"),
    ]
    assert plan.commands[0].timeout == 5
    assert plan.skip_levels == [Level.L3]
    assert plan.sources_used == ["work_order", "verify.yaml"]


def test_skip_levels_merge_work_order_and_file():
    plan = build_plan(base_texts={"verify.yaml": "version: 1\nskip_levels: [L2]\n"}, skip_levels=["L0"])
    assert plan.skip_levels == [Level.L0, Level.L2]


SIMPLE_CI = """
name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pip install -e .
      - run: |
          ruff check .
          python -m pytest -q \\
            --maxfail=1
      - name: types
        run: mypy src
        working-directory: backend
      - run: pytest -k ${{ matrix.python }}
"""
SERVICE_CI = """
on: push
jobs:
  it:
    runs-on: ubuntu-latest
    services:
      postgres: {image: postgres}
    steps: [{run: pytest}]
"""
SECRET_CI = "on: push\njobs:\n  d:\n    steps:\n      - run: npm test\n        env: {T: '${{ secrets.TOKEN }}'}\n"
IF_CI = "on: push\njobs:\n  d:\n    steps:\n      - run: npm test\n        if: github.ref == 'main'\n"


def test_ci_ingestion_keeps_simple_steps_and_notes_the_rest():
    cmds, notes, used = ingest_workflows(
        {
            ".github/workflows/ci.yml": SIMPLE_CI,
            ".github/workflows/it.yml": SERVICE_CI,
            ".github/workflows/deploy.yml": SECRET_CI,
            ".github/workflows/cond.yml": IF_CI,
        }
    )
    assert [(c.run, c.kind, c.cwd) for c in cmds] == [
        ("ruff check .", "lint", None),
        ("python -m pytest -q --maxfail=1", "test", None),
        ("mypy src", "typecheck", "backend"),
    ]
    text = "\n".join(notes)
    assert "it.yml: skipped, job it needs services" in text
    assert "deploy.yml: skipped, uses secrets" in text
    assert "cond.yml: skipped, job d has `if:` conditionals" in text
    assert "matrix.python" in text
    assert used == [".github/workflows/ci.yml"]


def test_ci_workflow_source_errors_when_nothing_runs():
    with pytest.raises(GatePlanError, match="no runnable"):
        build_plan(source="ci-workflow", base_texts={".github/workflows/it.yml": SERVICE_CI})


def test_auto_falls_back_to_ci_then_default():
    plan = build_plan(base_texts={".github/workflows/ci.yml": SIMPLE_CI})
    assert plan.sources_used == [".github/workflows/ci.yml"]
    assert ".github/workflows/ci.yml" in plan.plan_files
    plan = build_plan(head_files=["go.mod", "main.go"])
    assert [c.run for c in plan.commands] == ["go test ./...", "go vet ./..."]
    assert plan.sources_used == ["default"]


def test_default_detection():
    pkg = '{"scripts": {"test": "jest", "lint": "eslint .", "typecheck": "tsc --noEmit"}}'
    plan = build_plan(source="default", head_files=["package.json"], head_texts={"package.json": pkg})
    assert [(c.run, c.kind) for c in plan.commands] == [
        ("npm test", "test"),
        ("npm run lint", "lint"),
        ("npm run typecheck", "typecheck"),
    ]
    py = "[project]\nname='x'\n[tool.ruff]\nline-length=100\n"
    plan = build_plan(source="default", head_files=["pyproject.toml"], head_texts={"pyproject.toml": py})
    assert [c.run for c in plan.commands] == ["python3 -m pytest -q", "ruff check ."]
    plan = build_plan(source="default", head_files=["README"])
    assert plan.commands == [] and "no project type recognised" in plan.notes[-1]


def test_explicit_sources_need_their_input():
    with pytest.raises(GatePlanError, match="profile"):
        build_plan(source="profile")
    with pytest.raises(GatePlanError, match="workspace"):
        build_plan(source="workspace")
    plan = build_plan(source="profile", inline_gates=[GateSpec(command="true")], base_texts={"verify.yaml": "x: 1"})
    assert any("ignored" in n for n in plan.notes)


async def test_plan_files_are_read_from_the_base_commit(tmp_path):
    repo = Repo(
        tmp_path / "r",
        {"verify.yaml": "version: 1\ntests:\n  commands: ['python3 -m unittest']\n", "app.py": "x = 1\n"},
    )
    repo.write({"verify.yaml": "version: 1\ntests:\n  commands: ['true']\n"})  # the agent's edit
    head = await repo.snapshot()
    plan = await plan_for_workspace(repo.path, base=repo.base, head=head)
    assert [c.run for c in plan.commands] == ["python3 -m unittest"]
