#!/usr/bin/env bash
# The real agent CLIs (Claude Code, Codex, OpenCode) from the npm registry, into ./.agent-clis/.
#
# Only tests use them: they check that the command lines our drivers build are accepted
# by the real programs and that a run without credentials ends as a classified error.
# Those tests skip with a reason when the CLIs are absent, so a missing npm or a failed
# install prints a note and never fails `make install` / `make test`.
set -u
cd "$(dirname "$0")/.."
prefix=".agent-clis"
packages=(@anthropic-ai/claude-code @openai/codex opencode-ai)
bins=(claude codex opencode)

missing=0
for b in "${bins[@]}"; do
  [[ -x "$prefix/node_modules/.bin/$b" ]] || missing=1
done
((missing)) || exit 0

if ! command -v npm >/dev/null 2>&1; then
  echo "note: npm not found; real agent CLIs not installed (their tests will skip)"
  exit 0
fi
echo "installing agent CLIs into $prefix: ${packages[*]}"
mkdir -p "$prefix"
if ! npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "${packages[@]}" >"$prefix/install.log" 2>&1; then
  echo "note: npm install of ${packages[*]} failed (see $prefix/install.log); their tests will skip"
fi
exit 0
