-- Every saved version of every rule set; old versions are kept, never updated.
-- `body` is the whole `RuleSetVersion` (rules.rule_sets) as JSON.
create table rule_set_versions (
    rule_set_id text        not null,
    version     int         not null check (version >= 1),
    name        text        not null,
    is_default  boolean     not null,
    body        jsonb       not null,
    created_at  timestamptz not null default now(),
    put_seq     bigserial,
    primary key (rule_set_id, version)
);
-- The default rule set is the latest Put whose version (the set's current one) has is_default.
create index rule_set_versions_defaults on rule_set_versions (put_seq) where is_default;

-- The rule set each customer is evaluated with; customers not here get the default.
create table assignments (
    customer_id text        primary key,
    rule_set_id text        not null,
    assigned_at timestamptz not null default now()
);

-- The one answer given to each closed invoice: a re-sent InvoiceClosed changes nothing.
create table invoice_adjustments (
    invoice_id       text        primary key,
    customer_id      text,
    rule_set_id      text,
    rule_set_version int,
    body             jsonb       not null,
    created_at       timestamptz not null default now()
);
