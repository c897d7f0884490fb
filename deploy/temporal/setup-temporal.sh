#!/bin/sh
# One-shot after the server is up: the namespace AgentGate uses and the custom search
# attributes it lists and filters runs by (agentgate/search_attributes.py; the test suite
# checks that this list matches). Uses the `temporal` CLI, which reads TEMPORAL_ADDRESS.
# Idempotent: existing namespace and attributes are left alone.
set -eu
ns="${TEMPORAL_NAMESPACE:-default}"
retention="${TEMPORAL_NAMESPACE_RETENTION:-7d}"

i=0
until temporal operator cluster health >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 90 ] || { echo "Temporal at ${TEMPORAL_ADDRESS:-?} is not healthy" >&2; exit 1; }
  sleep 2
done

if ! temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1; then
  temporal operator namespace create --namespace "$ns" --retention "$retention"
fi

# A new namespace takes a few seconds to reach every frontend: retry each attribute.
add() {
  name="$1"; type="$2"; n=0
  until temporal operator search-attribute list --namespace "$ns" 2>/dev/null | grep -qw "$name"; do
    n=$((n + 1))
    [ "$n" -lt 20 ] || { echo "could not register search attribute $name" >&2; exit 1; }
    temporal operator search-attribute create --namespace "$ns" --name "$name" --type "$type" || sleep 3
  done
  echo "search attribute $name ($type) registered"
}

add AgentGateStatus Keyword
add AgentGateState Keyword
add AgentGateResult Keyword
add AgentGatePriority Int
add AgentGateAgent Keyword
add AgentGateRepo Keyword
add AgentGateLabels KeywordList
