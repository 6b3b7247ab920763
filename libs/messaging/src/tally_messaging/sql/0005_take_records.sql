-- Starting a message's transaction in one round trip (issue 16), where it took four: lock
-- the partitions' handled-offset rows (made when missing), tell the redelivered records
-- from the pending ones, take the per-key locks, claim the pending records' ids in the
-- dedupe window, and advance the handled offsets. At 100 messages a second each of those
-- round trips was a share of the latency (docs: PROFILE of 2026-12-01), with nothing to
-- decide in between that PostgreSQL cannot decide itself.
--
-- Arguments are one element per record (in the caller's order), except `lock_keys`: the
-- per-key locks, unique and sorted by the caller as every other locker sorts them, taken
-- in that order after the offset rows. Advancing before the handler runs is safe: the
-- caller's transaction commits the advance with the handler's work, or neither.
--
-- Returns one row per pending record (kind 'pending', n = its 1-based position), one per
-- id inserted into the window (kind 'fresh'), and one per pending id that was there
-- already (kind 'seen', with the stored digest). The caller decides duplicates and reused
-- ids from them exactly as from `claim_message_ids`. (Joins, not `= any(array)`: a batch
-- of 2,000 records would compare each with each.)
create function tally_take_records(
    p_consumer_group text,
    p_consumer       text,
    p_topics         text[],
    p_partitions     int[],
    p_offsets        bigint[],
    p_message_ids    uuid[],
    p_days           date[],
    p_digests        bytea[],
    p_lock_keys      text[]
) returns table (kind text, n int, message_id uuid, body_digest bytea)
language plpgsql as $$
declare
    pending int[];
    inserted uuid[];
begin
    insert into tally_consumed_offsets (consumer_group, topic, partition, handled_offset)
    select distinct p_consumer_group, t, p, -1 from unnest(p_topics, p_partitions) as k (t, p)
    on conflict do nothing;

    perform 1 from tally_consumed_offsets o
    where o.consumer_group = p_consumer_group
      and (o.topic, o.partition) in (select t, p from unnest(p_topics, p_partitions) as k (t, p))
    order by o.topic, o.partition
    for update;

    select coalesce(array_agg(r.n order by r.n), '{}') into pending
    from unnest(p_topics, p_partitions, p_offsets) with ordinality as r (t, p, off, n)
    join tally_consumed_offsets o
      on o.consumer_group = p_consumer_group and o.topic = r.t and o.partition = r.p
    where r.off > o.handled_offset;

    if cardinality(pending) > 0 then
        perform pg_advisory_xact_lock(hashtextextended(k.key, 0))
        from unnest(p_lock_keys) with ordinality as k (key, i)
        order by k.i;

        with claimed as (
            insert into tally_message_ids (consumer, day, message_id, body_digest)
            select p_consumer, r.day, r.message_id, r.digest
            from unnest(p_message_ids, p_days, p_digests) with ordinality as r (message_id, day, digest, n)
            join unnest(pending) as w (n) on w.n = r.n
            on conflict do nothing
            returning tally_message_ids.message_id
        )
        select coalesce(array_agg(c.message_id), '{}') into inserted from claimed c;

        return query select 'pending'::text, u.n::int, null::uuid, null::bytea from unnest(pending) as u (n);
        return query select 'fresh'::text, null::int, u.id, null::bytea from unnest(inserted) as u (id);
        if cardinality(inserted) < cardinality(pending) then  -- some were there (rare)
        return query
            select 'seen'::text, null::int, t.message_id, t.body_digest
            from tally_message_ids t
            join unnest(p_message_ids, p_days) with ordinality as r (message_id, day, n)
              on t.day = r.day and t.message_id = r.message_id
            join unnest(pending) as w (n) on w.n = r.n
            where t.consumer = p_consumer
              and not exists (select from unnest(inserted) as i (id) where i.id = r.message_id);
        end if;
    end if;

    update tally_consumed_offsets o set handled_offset = greatest(o.handled_offset, k.handled)
    from (
        select t, p, max(off) as handled from unnest(p_topics, p_partitions, p_offsets) as r (t, p, off)
        group by t, p
    ) as k
    where o.consumer_group = p_consumer_group and o.topic = k.t and o.partition = k.p;
end $$;
