#!/bin/sh
# One-shot: create (or upgrade) Temporal's two PostgreSQL databases before the server starts.
# Runs in the temporalio/admin-tools image, which carries temporal-sql-tool and the schemas.
# Safe to re-run on a kept volume: `create` of an existing database fails harmlessly,
# `setup-schema -v 0.0` leaves an already stamped version alone (only --overwrite resets it)
# and update-schema applies just the newer migrations, so a server version bump upgrades it.
set -eu
host="${POSTGRES_SEEDS:-postgresql}"
port="${DB_PORT:-5432}"
user="${POSTGRES_USER:-temporal}"
export SQL_PASSWORD="${POSTGRES_PWD:-temporal}"

i=0
until nc -z "$host" "$port"; do
  i=$((i + 1))
  [ "$i" -lt 60 ] || { echo "PostgreSQL at $host:$port is not reachable" >&2; exit 1; }
  sleep 2
done

for db in temporal temporal_visibility; do
  case "$db" in
    temporal) schema=/etc/temporal/schema/postgresql/v12/temporal/versioned ;;
    *) schema=/etc/temporal/schema/postgresql/v12/visibility/versioned ;;
  esac
  sql="temporal-sql-tool --plugin postgres12 --ep $host -p $port -u $user --db $db"
  $sql create || true
  $sql setup-schema -v 0.0 || true
  $sql update-schema -d "$schema"
done
echo "Temporal schemas are up to date"
