create table probe_grouped (
    seq bigserial primary key,
    message_id uuid not null,
    txid bigint not null
);
