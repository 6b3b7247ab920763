-- Duplicate detection whose cost does not grow with history (issue 15), in two parts.

-- 1. Redelivery (a restart, a rebalance, a crash between the commit and Kafka's offset
-- commit): the last offset handled per (consumer group, topic, partition), written in the
-- same transaction as the state change, the rejection or the dead letter. One row per
-- partition, locked by each transaction on it; a record at or below it was handled
-- already. Consumers also seek past it when a partition is assigned.
create table tally_consumed_offsets (
    consumer_group text   not null,
    topic          text   not null,
    partition      int    not null,
    handled_offset bigint not null,
    primary key (consumer_group, topic, partition)
);

-- 2. Re-sent messages (an upstream publishing the same event id twice): the ids handled
-- within the dedupe window, partitioned by the UTC day of the message's own time
-- (`occurred_at`). A copy of a message carries the same time, so a lookup reads one day's
-- partition; expiring a day is dropping its partition, never a DELETE. A message older
-- than the window is dead-lettered before it gets here, so a dropped day is never needed.
create table tally_message_ids (
    consumer    text  not null,
    day         date  not null,
    message_id  uuid  not null,
    body_digest bytea not null,
    primary key (consumer, day, message_id)
) partition by range (day);

comment on column tally_message_ids.body_digest is
    'First 8 bytes of the SHA-256 of the body as received: the same id with another body is a reused id.';

-- Partitions are named tally_message_ids_YYYYMMDD and made by the runtime: ahead of time
-- for the coming days, on demand for any other day a message names.
create function tally_message_ids_ensure(days date[]) returns void language plpgsql as $$
declare
    d date;
begin
    perform pg_advisory_xact_lock(hashtextextended('tally_message_ids partitions', 0));
    foreach d in array days loop
        execute format(
            'create table if not exists %I partition of tally_message_ids for values from (%L) to (%L)',
            'tally_message_ids_' || to_char(d, 'YYYYMMDD'), d, d + 1
        );
    end loop;
end $$;

-- Drops the partitions of the days before `first_kept`; returns the days dropped.
create function tally_message_ids_drop_before(first_kept date) returns setof date language plpgsql as $$
declare
    part record;
begin
    perform pg_advisory_xact_lock(hashtextextended('tally_message_ids partitions', 0));
    for part in
        select c.relname, to_date(right(c.relname, 8), 'YYYYMMDD') as day
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'tally_message_ids'::regclass
          and c.relname ~ '^tally_message_ids_[0-9]{8}$'
          and to_date(right(c.relname, 8), 'YYYYMMDD') < first_kept
        order by 2
    loop
        execute format('drop table %I', part.relname);
        return next part.day;
    end loop;
end $$;

-- The days that have a partition.
create function tally_message_ids_days() returns setof date language sql stable as $$
    select to_date(right(c.relname, 8), 'YYYYMMDD')
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'tally_message_ids'::regclass
      and c.relname ~ '^tally_message_ids_[0-9]{8}$'
$$;

-- 3. tally_inbox gets no new rows. Its rows (ids handled before this migration, kept for
-- ever until now) stay read-only: the runtime still looks ids up in it until the window
-- has passed since this moment, then ignores it; a later migration drops it.
create table tally_inbox_retired (retired_at timestamptz not null default now());
insert into tally_inbox_retired default values;
