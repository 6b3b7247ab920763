-- The exactly-once runtime's own tables, in every service's database.

-- A message id is handled at most once per consumer.
create table tally_inbox (
    consumer   text        not null,
    message_id uuid        not null,
    handled_at timestamptz not null default now(),
    primary key (consumer, message_id)
);

-- What a handler publishes, written in the same transaction as its state change.
-- The relay sends rows in id order and deletes them once Kafka acknowledged them.
create table tally_outbox (
    id         bigserial   primary key,
    topic      text        not null,
    key        text        not null,
    type       text        not null,
    payload    bytea       not null,
    created_at timestamptz not null default now()
);

create function tally_outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('tally_outbox', '');
    return null;
end $$;

create trigger tally_outbox_notify after insert on tally_outbox
    for each statement execute function tally_outbox_notify();
