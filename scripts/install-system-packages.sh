#!/usr/bin/env bash
# Optional system packages used by some features and their tests (each feature skips with
# a reason when its package is missing). Installed only when we are root with apt-get;
# a failure here never fails `make install`.
set -u
want=(bubblewrap chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1) \
    || echo "note: could not install ${missing[*]}; the features that need them will report it"
else
  echo "note: not root or no apt-get; optional packages not installed: ${missing[*]}"
fi
exit 0
