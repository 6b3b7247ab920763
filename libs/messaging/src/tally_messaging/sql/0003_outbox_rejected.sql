-- Outbox rows Kafka refused for good (too large for the topic, ...): set aside with the
-- reason so the relay keeps publishing the rows behind them. An operator reads, fixes
-- and re-inserts them into tally_outbox, or deletes them.
create table tally_outbox_rejected (
    id          bigint      primary key,
    topic       text        not null,
    key         text        not null,
    type        text        not null,
    payload     bytea       not null,
    created_at  timestamptz not null,
    rejected_at timestamptz not null default now(),
    reason      text        not null
);
