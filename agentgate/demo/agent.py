"""The demo agent: a deterministic program that really edits files, one fix per iteration.

It implements the first function of `mathlib.py` that still raises NotImplementedError.
From iteration 2 on it reads the feedback file AgentGate wrote and fixes the function
named by the failing test there. Like a real agent it therefore needs the feedback
loop: iteration 1's change leaves a failing test, iteration 2's change makes it pass.
It prints a line per step so its output is visible in the run's records.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

IMPLEMENTATIONS = {"add": "return a + b", "multiply": "return a * b", "subtract": "return a - b"}
_STUB = re.compile(r'(def (\w+)\(a, b\):\n)(\s+)raise NotImplementedError\("\w+"\)')


def _pick_target(source: str, feedback: str | None) -> str | None:
    stubs = [m.group(2) for m in _STUB.finditer(source)]
    if not stubs:
        return None
    if feedback:
        for name in stubs:
            if re.search(rf"\btest_{name}\b", feedback):
                return name
    return stubs[0]


def main() -> int:
    iteration = os.environ.get("AGENTGATE_ITERATION", "?")
    prompt = Path(os.environ["AGENTGATE_PROMPT_FILE"]).read_text()
    feedback_file = os.environ.get("AGENTGATE_FEEDBACK_FILE")
    feedback = Path(feedback_file).read_text() if feedback_file else None
    print(f"demo-agent: iteration {iteration}; task: {prompt.strip()[:120]}", flush=True)
    if feedback:
        print(f"demo-agent: read {len(feedback)} characters of feedback", flush=True)
    target_file = Path("mathlib.py")
    if not target_file.exists():
        print("demo-agent: mathlib.py not found in the workspace", file=sys.stderr)
        return 2
    source = target_file.read_text()
    name = _pick_target(source, feedback)
    if name is None:
        print("demo-agent: nothing left to implement", flush=True)
        return 0
    body = IMPLEMENTATIONS.get(name)
    if body is None:
        print(f"demo-agent: does not know how to implement {name}", file=sys.stderr)
        return 3
    new_source = _STUB.sub(lambda m: m.group(1) + m.group(3) + body if m.group(2) == name else m.group(0), source)
    target_file.write_text(new_source)
    print(f"demo-agent: implemented {name} in mathlib.py", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
