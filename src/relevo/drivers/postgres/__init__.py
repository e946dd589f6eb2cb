"""The PostgreSQL driver, on psycopg 3 (async) and psycopg_pool."""
