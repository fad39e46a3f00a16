#!/usr/bin/env bash
# Entry point of the hub's images: wait until the database and the broker answer, then
# run the command (`hub web`, `hub worker ...`) in this process's place, so that it gets
# the container's signals itself.
#
#   HUB_DATABASE_URL  waited for when it names PostgreSQL (postgresql://, postgresql+psycopg://)
#   HUB_BROKER_URL    waited for when it names Redis (redis://, rediss://)
#   HUB_WAIT_SECONDS  how long to wait for each of them (60); 0 waits for neither
#
# Messages name the variable, never the URL: it may hold a password.
set -euo pipefail

me=hub-entrypoint
wait_seconds="${HUB_WAIT_SECONDS:-60}"
if ! [[ "$wait_seconds" =~ ^[0-9]+$ ]]; then
  echo "$me: HUB_WAIT_SECONDS=$wait_seconds is not a whole number of seconds" >&2
  exit 2
fi
if [[ "$#" -eq 0 ]]; then
  echo "$me: no command given; e.g. hub web --host 0.0.0.0 --port 8000" >&2
  exit 2
fi

# probe SERVICE URL: one attempt to reach the service, with the hub's own client
# libraries. Prints why it failed. Exit status: 0 it answered; 1 not yet; 2 it refused
# the credentials or the database, which waiting does not cure.
probe() {
  python - "$1" "$2" <<'PYTHON'
import sys

service, url = sys.argv[1], sys.argv[2]
try:
    if service == "PostgreSQL":
        import psycopg
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        params = parsed.translate_connect_args(username="user", database="dbname")
        params.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
        with psycopg.connect(connect_timeout=3, **params) as connection:
            connection.execute("SELECT 1")
    else:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
except Exception as exc:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    print(reason[:300])
    # The server answered, and said no to these credentials or this database: both are
    # made before PostgreSQL listens on TCP, so waiting longer does not help.
    lasting = ("authentication failed", "does not exist", "no pg_hba.conf entry")
    refused = any(m in reason for m in lasting) or "Authentication" in type(exc).__name__
    sys.exit(2 if refused else 1)
PYTHON
}

# wait_for SERVICE VARIABLE: probe the service named by VARIABLE once a second until it
# answers; give up after HUB_WAIT_SECONDS.
wait_for() {
  local service=$1 variable=$2
  local url=${!variable}
  local deadline=$((SECONDS + wait_seconds)) waited="" reason status
  while true; do
    status=0
    reason=$(probe "$service" "$url") || status=$?
    if [[ "$status" -eq 0 ]]; then
      [[ -z "$waited" ]] || echo "$me: $service is up"
      return 0
    fi
    if [[ "$status" -eq 2 ]]; then
      echo "$me: $service refused the hub: $reason; check the user, password and database in $variable" >&2
      exit 1
    fi
    if [[ "$SECONDS" -gt "$deadline" ]]; then
      echo "$me: $service did not answer within $wait_seconds s (last: $reason);" \
        "check $variable and that $service is up, or raise HUB_WAIT_SECONDS" >&2
      exit 1
    fi
    if [[ -z "$waited" ]]; then
      echo "$me: waiting up to $wait_seconds s for $service ($variable): $reason"
      waited=1
    fi
    sleep 1
  done
}

if [[ "$wait_seconds" -gt 0 ]]; then
  case "${HUB_DATABASE_URL:-}" in
    postgresql:* | postgresql+*:*) wait_for PostgreSQL HUB_DATABASE_URL ;;
    *) ;; # SQLite, or unset: nothing to wait for
  esac
  case "${HUB_BROKER_URL:-}" in
    redis:* | rediss:*) wait_for Redis HUB_BROKER_URL ;;
    *) ;; # the filesystem transport, or another broker: nothing to wait for
  esac
fi

exec "$@"
