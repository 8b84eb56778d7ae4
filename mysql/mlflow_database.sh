# MLflow's own database and user, made at the `mysql` service's first initialisation (docker-compose.yml mounts
# this file in /docker-entrypoint-initdb.d/): database `mlflow`, user MLFLOW_DB_USER with MLFLOW_DB_PASSWORD,
# allowed nothing outside it. The image's entrypoint sources it while its temporary server listens on the socket
# only, as root: the official image exports root's password (a generated one too) as MYSQL_ROOT_PASSWORD; the
# offline stand-in (MariaDB, ../shared/container-engine) keeps it in root_pw. A volume initialised before this
# file existed is not initialised again: `docker compose down -v` starts from scratch (README, compose).

mlflow_sql_string() {  # a quoted SQL string literal
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\\\'}"
}

root_password=${MYSQL_ROOT_PASSWORD:-}
[ -n "${root_password}" ] || root_password=${root_pw:-}
MYSQL_PWD="${root_password}" mysql --protocol=socket -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`mlflow\`;
CREATE USER IF NOT EXISTS $(mlflow_sql_string "${MLFLOW_DB_USER}")@'%'
  IDENTIFIED BY $(mlflow_sql_string "${MLFLOW_DB_PASSWORD}");
GRANT ALL ON \`mlflow\`.* TO $(mlflow_sql_string "${MLFLOW_DB_USER}")@'%';
FLUSH PRIVILEGES;
SQL
echo "mlflow_database.sh: database mlflow and user ${MLFLOW_DB_USER} ready"
