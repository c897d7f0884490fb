"""The demo's sample repository: a tiny library with two unimplemented functions and their tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

MATHLIB = '''"""A tiny library the demo agent completes."""


def add(a, b):
    raise NotImplementedError("add")


def multiply(a, b):
    raise NotImplementedError("multiply")
'''

TESTS = """import unittest

import mathlib


class MathlibTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(mathlib.add(2, 3), 5)

    def test_multiply(self):
        self.assertEqual(mathlib.multiply(4, 5), 20)


if __name__ == "__main__":
    unittest.main()
"""

TASK_PROMPT = "Implement add and multiply in mathlib.py so that the unit tests in test_mathlib.py pass."
GATE_COMMAND = "python3 -m unittest -v test_mathlib"


def create_sample_repo(path: Path) -> Path:
    """A git repository whose test fails until both functions are implemented."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "mathlib.py").write_text(MATHLIB)
    (path / "test_mathlib.py").write_text(TESTS)
    (path / ".gitignore").write_text("__pycache__/\n")
    env_args = ["-c", "user.name=AgentGate Demo", "-c", "user.email=demo@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", *env_args, "-C", str(path), "commit", "-q", "-m", "sample: failing tests"], check=True)
    return path
