"""Gate integrity: each rule against a real repository where an agent cheats (and honest edits pass)."""

from __future__ import annotations

import pytest

from agentgate.models import GateSpec
from agentgate.verification.integrity import check_integrity
from agentgate.verification.plan import build_plan
from agentgate.verification.report import IntegrityRule
from tests.vhelpers import Repo

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = """import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_add_zero(self):
        self.assertEqual(calc.add(0, 0), 0)
        self.assertEqual(calc.add(1, 0), 1)
"""
PYPROJECT = """[project]
name = "calc"

[tool.coverage.report]
fail_under = 90

[tool.pytest.ini_options]
addopts = "--cov=calc --cov-fail-under=85"
"""
JS_TEST = "test('adds', () => {\n  expect(add(1, 2)).toBe(3);\n});\n"
GO_TEST = (
    'package calc\n\nimport "testing"\n\n'
    'func TestAdd(t *testing.T) {\n\tif Add(1, 2) != 3 {\n\t\tt.Fatal("bad")\n\t}\n}\n'
)
MAKEFILE = "test:\n\tpython3 -m pytest -q\n"


@pytest.fixture
def repo(tmp_path):
    return Repo(
        tmp_path / "repo",
        {
            "calc.py": CALC,
            "tests/test_calc.py": TEST_CALC,
            "pyproject.toml": PYPROJECT,
            "web/add.test.js": JS_TEST,
            "calc_test.go": GO_TEST,
            "Makefile": MAKEFILE,
            "scripts/check.sh": "#!/bin/sh\npython3 -m unittest discover -s tests\n",
            "verify.yaml": "version: 1\ntests:\n  commands: ['python3 -m unittest discover -s tests']\n",
        },
    )


async def violations(repo: Repo, gates=("python3 -m unittest discover -s tests",), **plan_kw) -> dict[str, list]:
    diff = await repo.diff()
    base_texts = {"verify.yaml": (repo.path / "verify.yaml").read_text()} if "verify.yaml" in diff.head_files else {}
    plan = build_plan(inline_gates=[GateSpec(command=g) for g in gates], base_texts=base_texts, **plan_kw)
    found: dict[str, list] = {}
    for r in await check_integrity(plan, diff, repo.path):
        if not r.passed:
            found.setdefault(r.rule, []).append(r)
    return found


async def test_honest_fix_passes(repo):
    repo.write({"calc.py": "def add(a, b):\n    return a + b\n"})
    repo.write({"tests/test_calc.py": TEST_CALC + "\n    def test_more(self):\n        assert calc.add(1, 1) == 2\n"})
    assert await violations(repo) == {}


async def test_deleting_a_test_file(repo):
    repo.delete("tests/test_calc.py")
    found = await violations(repo)
    assert [v.file for v in found[IntegrityRule.TEST_DELETED]] == ["tests/test_calc.py"]


async def test_renaming_a_test_file(repo):
    repo.rename("tests/test_calc.py", "tests/calc_checks_disabled.py")
    found = await violations(repo)
    assert found[IntegrityRule.TEST_RENAMED][0].file == "tests/test_calc.py"


@pytest.mark.parametrize(
    "path,old,new",
    [
        ("tests/test_calc.py", "    def test_add(self):", "    @unittest.skip('flaky')\n    def test_add(self):"),
        ("tests/test_calc.py", "    def test_add(self):", "    @pytest.mark.xfail\n    def test_add(self):"),
        ("tests/test_calc.py", "        self.assertEqual(calc.add(2, 3), 5)", "        self.skipTest('later')"),
        ("web/add.test.js", "test('adds'", "test.skip('adds'"),
        ("web/add.test.js", "test('adds'", "xit('adds'"),
        ("calc_test.go", "\tif Add", '\tt.Skip("later")\n\tif Add'),
    ],
)
async def test_adding_skip_markers(repo, path, old, new):
    text = (repo.path / path).read_text()
    repo.write({path: text.replace(old, new, 1)})
    found = await violations(repo, gates=["python3 -m unittest discover -s tests"])
    hits = found[IntegrityRule.SKIP_MARKER_ADDED]
    assert hits[0].file == path and hits[0].line is not None


async def test_moving_an_existing_skip_is_not_a_violation(tmp_path):
    skipped = TEST_CALC.replace("    def test_add_zero", "    @unittest.skip('upstream bug')\n    def test_add_zero")
    repo = Repo(tmp_path / "r", {"calc.py": CALC, "tests/test_calc.py": skipped})
    repo.write({"tests/test_calc.py": "# reordered\n" + skipped})
    assert IntegrityRule.SKIP_MARKER_ADDED not in await violations(repo)


async def test_swallowing_failures_with_or_true(repo):
    repo.write({"Makefile": "test:\n\tpython3 -m pytest -q || true\n"})
    found = await violations(repo, gates=["echo unrelated"])
    assert found[IntegrityRule.FAILURE_SUPPRESSED][0].file == "Makefile"


async def test_lowering_coverage_thresholds(repo):
    repo.write({"pyproject.toml": PYPROJECT.replace("fail_under = 90", "fail_under = 10").replace("=85", "=0")})
    found = await violations(repo)
    messages = " ".join(v.message for v in found[IntegrityRule.THRESHOLD_LOWERED])
    assert "from 90 to 10" in messages and "from 85 to 0" in messages


async def test_removing_a_threshold(repo):
    repo.write({"pyproject.toml": PYPROJECT.replace("fail_under = 90\n", "")})
    found = await violations(repo)
    assert "removed" in found[IntegrityRule.THRESHOLD_LOWERED][0].message


async def test_raising_a_threshold_is_fine(repo):
    repo.write({"pyproject.toml": PYPROJECT.replace("fail_under = 90", "fail_under = 95")})
    assert IntegrityRule.THRESHOLD_LOWERED not in await violations(repo)


async def test_editing_verify_yaml(repo):
    repo.write({"verify.yaml": "version: 1\ntests:\n  commands: ['true']\n"})
    found = await violations(repo)
    assert found[IntegrityRule.GATE_FILE_EDITED][0].file == "verify.yaml"


async def test_creating_agentgate_verify_yaml(repo):
    repo.write({".agentgate/verify.yaml": "version: 1\n"})
    found = await violations(repo)
    assert found[IntegrityRule.GATE_FILE_EDITED][0].file == ".agentgate/verify.yaml"


async def test_editing_a_script_the_gate_runs(repo):
    repo.write({"scripts/check.sh": "#!/bin/sh\nexit 0\n"})
    found = await violations(repo, gates=["sh scripts/check.sh"])
    assert found[IntegrityRule.GATE_FILE_EDITED][0].file == "scripts/check.sh"


async def test_editing_the_makefile_of_make_test(repo):
    repo.write({"Makefile": "test:\n\techo ok\n"})
    found = await violations(repo, gates=["make test"])
    assert found[IntegrityRule.GATE_FILE_EDITED][0].file == "Makefile"


async def test_changing_the_npm_test_script(tmp_path):
    pkg = '{"name": "x", "scripts": {"test": "jest", "build": "tsc"}, "dependencies": {}}\n'
    repo = Repo(tmp_path / "r", {"package.json": pkg, "src/index.js": "module.exports = 1\n"})
    repo.write({"package.json": pkg.replace('"dependencies": {}', '"dependencies": {"left-pad": "1"}')})
    assert IntegrityRule.GATE_FILE_EDITED not in await violations(repo, gates=["npm test"])
    repo.write({"package.json": pkg.replace('"test": "jest"', '"test": "echo ok"')})
    found = await violations(repo, gates=["npm test"])
    assert "script `test`" in found[IntegrityRule.GATE_FILE_EDITED][0].message


async def test_protected_paths(repo):
    repo.write({"fixtures/golden.txt": "new\n"})
    found = await violations(repo, protected_paths=["fixtures/**"])
    assert found[IntegrityRule.PROTECTED_PATH_EDITED][0].file == "fixtures/golden.txt"


async def test_removing_assertions(repo):
    repo.write({"tests/test_calc.py": TEST_CALC.replace("        self.assertEqual(calc.add(1, 0), 1)\n", "")})
    found = await violations(repo)
    hit = found[IntegrityRule.ASSERTIONS_REMOVED][0]
    assert hit.file == "tests/test_calc.py" and hit.line == 12


async def test_rewriting_an_assertion_keeps_the_count(repo):
    repo.write({"tests/test_calc.py": TEST_CALC.replace("calc.add(1, 0), 1)", "calc.add(1, 0), 1, 'msg')")})
    assert IntegrityRule.ASSERTIONS_REMOVED not in await violations(repo)


async def test_allowing_a_rule_in_verify_yaml(tmp_path):
    vy = "version: 1\nintegrity:\n  allow: [failure_suppressed]\n"
    repo = Repo(tmp_path / "r", {"verify.yaml": vy, "run.sh": "echo hi\n"})
    repo.write({"run.sh": "rm -f x || true\n"})
    assert IntegrityRule.FAILURE_SUPPRESSED not in await violations(repo, gates=["echo ok"])
