-- One PostgreSQL instance, one database per service (the compose file mounts this into
-- /docker-entrypoint-initdb.d, which runs only when the data volume is first created).
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
