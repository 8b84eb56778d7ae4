"""A fresh, uniquely named, empty database on a MySQL/MariaDB or PostgreSQL server, dropped afterwards.

Not a user entry point: the tests' database fixtures (tests/conftest.py, tests/deploy/conftest.py) and
bench/pipeline_scale.py all get their throwaway databases from here.
"""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

# By dialect: MySQL's `utf8` is not all of UTF-8; PostgreSQL refuses to drop a database a session still uses
# (a test's pooled connection) unless told WITH (FORCE).
CREATE = {"mysql": "CREATE DATABASE {} CHARACTER SET utf8mb4", "postgresql": "CREATE DATABASE {}"}
DROP = {"mysql": "DROP DATABASE IF EXISTS {}", "postgresql": "DROP DATABASE IF EXISTS {} WITH (FORCE)"}


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """`with scratch_database("mysql+pymysql://root@127.0.0.1:3306", "penguins_test") as url:` the SQLAlchemy
    URL of a new database `<prefix>_<12 hex digits>` on that server, dropped on the way out. A server that
    does not answer within 5 s raises sqlalchemy.exc.OperationalError before anything is created."""
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"{prefix}_{secrets.token_hex(6)}"
    quoted = server.dialect.identifier_preparer.quote_identifier(name)
    try:
        with server.connect() as connection:
            connection.exec_driver_sql(CREATE[server.dialect.name].format(quoted))
        try:
            yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with server.connect() as connection:
                connection.exec_driver_sql(DROP[server.dialect.name].format(quoted))
    finally:
        server.dispose()
