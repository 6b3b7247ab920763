create table probe_applied (
    message_id uuid not null,
    grant_id text not null,
    amount numeric not null
);
create table probe_usage (message_id uuid not null, batch_size int not null);
