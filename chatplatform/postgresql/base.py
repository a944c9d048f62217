"""Django's PostgreSQL backend, its connection pool checking connections as
`chatplatform.pool` does (settings.py names this backend when DB_POOL is on).

Django gives its pool psycopg_pool's own check, or none (CONN_HEALTH_CHECKS),
and refuses a `check` among the pool's options; this backend makes the pool
as Django does, with the `check` of those options.
"""

from __future__ import annotations

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        options = self.settings_dict["OPTIONS"].get("pool")
        if isinstance(options, dict) and "check" in options and self.alias not in self._connection_pools:
            from psycopg_pool import ConnectionPool

            options = dict(options)
            check = options.pop("check")
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # as Django's: it sets autocommit itself later on
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=check,
                **options,
            )
            self._connection_pools.setdefault(self.alias, pool)  # the first of racing threads wins
        return super().pool
