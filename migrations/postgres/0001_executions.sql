-- rota's history store: every execution record in a final state, copied from Redis by the
-- archiver (src/history/). Several rota clusters may share one database: `cluster` is the Redis
-- key prefix and cluster name (`<redis_prefix>:<cluster>`), and every query names it.
-- `id` is the execution's UUIDv7 in its text form, which sorts by creation time; `record` is the
-- execution as the API knows it (the JSON Redis holds), the other columns are what listings filter on.
CREATE TABLE rota_executions (
    cluster      text        NOT NULL,
    id           text        NOT NULL,
    job_id       text        NOT NULL,
    fire_id      text        NOT NULL,
    node_id      text        NOT NULL,
    state        text        NOT NULL,
    scheduled_ms bigint      NOT NULL,
    record       jsonb       NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, id)
);
CREATE INDEX rota_executions_by_job ON rota_executions (cluster, job_id, id);
CREATE INDEX rota_executions_by_node ON rota_executions (cluster, node_id, id);
CREATE INDEX rota_executions_by_fire ON rota_executions (cluster, fire_id);
CREATE INDEX rota_executions_by_scheduled ON rota_executions (cluster, scheduled_ms);
