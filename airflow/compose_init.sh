#!/usr/bin/env bash
# One-shot setup run as root by the `airflow-init` compose service before any other Airflow service starts:
# share the signing secrets and the admin login through the auth volume, migrate the metadata database, and
# hand the shared folders to AIRFLOW_UID so tasks can write ./artifacts on a default Linux host.
set -euo pipefail

auth_dir=/opt/airflow/auth
shared_dirs=(/opt/airflow/logs "${ARTIFACTS_DIR}" "${auth_dir}")

if [[ -z "${AIRFLOW_UID:-}" ]]; then
  echo "WARNING: AIRFLOW_UID is not set, so ./artifacts will belong to uid 50000 on the host." >&2
  echo "         On Linux, run once:  echo \"AIRFLOW_UID=\$(id -u)\" >> .env" >&2
fi
uid="${AIRFLOW_UID:-50000}"

# docker-compose.yml publishes every host port on BIND_ADDRESS (127.0.0.1 unless .env opens it): once opened,
# a default password or an open /warmup faces the network. Said loudly, not refused: a trusted network is the
# user's call.
warn_if_exposed() {
  case "${BIND_ADDRESS:-127.0.0.1}" in
    127.* | localhost | ::1 | "[::1]") return 0 ;;
  esac
  local problems=()
  [[ "${AIRFLOW_ADMIN_PASSWORD:-}" == admin ]] &&
    problems+=("the Airflow UI logs in with the default password admin: set AIRFLOW_ADMIN_PASSWORD")
  [[ -z "${WARMUP_TOKEN:-}" ]] &&
    problems+=("WARMUP_TOKEN is empty: anyone who reaches the API may call POST /warmup: set WARMUP_TOKEN")
  [[ "${MYSQL_PASSWORD:-}" == penguins ]] &&
    problems+=("MySQL has the default password penguins: set MYSQL_PASSWORD")
  ((${#problems[@]})) || return 0
  echo "WARNING: BIND_ADDRESS=${BIND_ADDRESS} publishes the stack's ports beyond this machine, and" >&2
  printf 'WARNING:   - %s\n' "${problems[@]}" >&2
  echo "WARNING: fix these in .env, or remove BIND_ADDRESS to publish on 127.0.0.1 only." >&2
}
warn_if_exposed

# A secret given in the environment wins; otherwise one is generated on the first start and kept in the
# volume, so every Airflow container signs and checks tokens with the same key.
store_secret() {
  local file="${auth_dir}/$1" value="$2"
  if [[ -n "${value}" ]]; then
    printf '%s' "${value}" > "${file}"
  elif [[ ! -s "${file}" ]]; then
    python -c 'import secrets; print(secrets.token_urlsafe(64), end="")' > "${file}"
  fi
}

mkdir -p "${shared_dirs[@]}"
store_secret jwt_secret "${AIRFLOW_JWT_SECRET:-}"
store_secret secret_key "${AIRFLOW_SECRET_KEY:-}"
# SimpleAuthManager reads the login from this file (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE).
python -c 'import json, os, sys; json.dump({os.environ["AIRFLOW_ADMIN_USER"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, sys.stdout)' \
  > "${auth_dir}/passwords.json"

echo "Migrating the Airflow metadata database"
airflow db migrate

chown -R "${uid}:0" "${shared_dirs[@]}"
chmod -R g+rwX "${shared_dirs[@]}"
chmod 0770 "${auth_dir}"
# The prediction log's volume: the API (a user of group 0, api/Dockerfile) writes its files, 0644; Airflow
# (group 0 too) reads them and, through the group's write permission on the folder, deletes the loaded old ones.
mkdir -p "${PREDICTIONS_DIR}"
chgrp 0 "${PREDICTIONS_DIR}"
chmod 2775 "${PREDICTIONS_DIR}"
echo "airflow-init done: admin login '${AIRFLOW_ADMIN_USER}', shared folders owned by ${uid}:0"
