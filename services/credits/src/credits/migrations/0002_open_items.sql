-- One row per record instead of one JSONB snapshot per customer (issue 15): a message
-- reads only the customer's open items (credits.open_items) and writes only what it
-- changed, so its cost does not grow with the customer's history. Every primary key
-- starts with customer_id; the partial indexes are exactly the open-item rules.
-- Amounts are numeric in the record's currency (a grant's `granted` keeps its own).

-- The per-customer counter ("oldest first"), and the row each message locks.
create table credit_customers (
    customer_id text   primary key,
    next_seq    bigint not null
);

create table credit_grants (
    customer_id        text    not null,
    grant_id           text    not null,
    granted_amount     numeric not null,
    granted_currency   text    not null,
    currency           text    not null,
    amount             numeric not null,
    remaining          numeric not null,
    expired            numeric not null,
    deducted           numeric not null,
    expires_at         date,
    seq                bigint  not null,
    source             text    not null,
    reason             text,
    first_eligible_seq bigint  not null,
    status             text    not null check (status in ('active', 'deleted')),
    priority           int,
    scoped             boolean not null,
    scope_line_kind    text,
    scope_service      text,
    primary key (customer_id, grant_id)
);
create index credit_grants_open on credit_grants (customer_id, seq)
    where status = 'active' and remaining > 0;
create index credit_grants_held on credit_grants (customer_id, seq) where first_eligible_seq > 0;

create table credit_lots (
    customer_id        text    not null,
    lot_id             text    not null,
    origin             text    not null,
    origin_id          text    not null,
    currency           text    not null,
    amount             numeric not null,
    remaining          numeric not null,
    seq                bigint  not null,
    status             text    not null check (status in ('active', 'deleted', 'withdrawn')),
    first_eligible_seq bigint  not null,
    source             text,
    reason             text,
    primary key (customer_id, lot_id)
);
create index credit_lots_open on credit_lots (customer_id, seq) where status = 'active' and remaining <> 0;
create index credit_lots_held on credit_lots (customer_id, seq) where first_eligible_seq > 0;
create index credit_lots_by_origin on credit_lots (customer_id, origin_id);

create table credit_invoices (
    customer_id      text    not null,
    invoice_id       text    not null,
    currency         text    not null,
    total            numeric not null,
    issued_on        date    not null,
    seq              bigint  not null,
    sort_order       bigint  not null,
    status           text    not null check (status in ('open', 'paid', 'voided')),
    regenerated_from text,
    line_count       int     not null,  -- rows in credit_invoice_lines: none, no query
    primary key (customer_id, invoice_id)
);
create index credit_invoices_open on credit_invoices (customer_id, currency, seq) where status = 'open';

-- The lines a scoped grant may pay, written once with their invoice.
create table credit_invoice_lines (
    customer_id text    not null,
    invoice_id  text    not null,
    n           int     not null,
    line_id     text    not null,
    kind        text    not null,
    service     text,
    amount      numeric not null,
    primary key (customer_id, invoice_id, n)
);

create table credit_payments (
    customer_id text    not null,
    payment_id  text    not null,
    invoice_id  text,
    currency    text    not null,
    amount      numeric not null,
    received_on date    not null,
    status      text    not null check (status in ('parked', 'applied', 'reversed')),
    position    bigint  generated always as identity,
    primary key (customer_id, payment_id)
);
create index credit_payments_parked on credit_payments (customer_id, position) where status = 'parked';

-- Append-only: an application is written once; releasing it appends a release.
create table credit_applications (
    customer_id    text    not null,
    application_id text    not null,
    invoice_id     text    not null,
    source_type    text    not null check (source_type in ('promotional', 'credit_balance', 'payment')),
    source_id      text    not null,
    currency       text    not null,
    amount         numeric not null,
    part_count     int     not null,  -- rows in credit_application_lines: none, no query
    position       bigint  generated always as identity,
    primary key (customer_id, application_id)
);
create index credit_applications_by_invoice on credit_applications (customer_id, invoice_id);
create index credit_applications_by_source on credit_applications (customer_id, source_id);

create table credit_application_lines (
    customer_id    text    not null,
    application_id text    not null,
    n              int     not null,
    line_id        text    not null,
    amount         numeric not null,
    primary key (customer_id, application_id, n)
);

create table credit_application_releases (
    customer_id    text not null,
    application_id text not null,
    released_by    text not null,  -- the message id
    primary key (customer_id, application_id)
);

create table credit_refunds (
    customer_id text    not null,
    refund_id   text    not null,
    currency    text    not null,
    amount      numeric not null,
    status      text    not null check (status in ('refunded', 'declined')),
    primary key (customer_id, refund_id)
);

create table credit_deductions (
    customer_id  text    not null,
    deduction_id text    not null,
    currency     text    not null,
    amount       numeric not null,
    primary key (customer_id, deduction_id)
);

-- The upgrade: every snapshot of 0001 becomes rows, in the order its records were made
-- (arrays keep insertion order; `with ordinality` carries it into `position`). Snapshots
-- from before issue 18 have no priority, scope or lines: they read as none.
insert into credit_customers (customer_id, next_seq)
select customer_id, (state ->> 'next_seq')::bigint from customer_ledgers;

insert into credit_grants (customer_id, grant_id, granted_amount, granted_currency, currency, amount,
    remaining, expired, deducted, expires_at, seq, source, reason, first_eligible_seq, status, priority,
    scoped, scope_line_kind, scope_service)
select l.customer_id, g ->> 'grant_id', (g -> 'granted' ->> 'amount')::numeric, g -> 'granted' ->> 'currency',
    g -> 'amount' ->> 'currency', (g -> 'amount' ->> 'amount')::numeric, (g -> 'remaining' ->> 'amount')::numeric,
    (g -> 'expired' ->> 'amount')::numeric, (g -> 'deducted' ->> 'amount')::numeric,
    (g ->> 'expires_at')::date, (g ->> 'seq')::bigint, g ->> 'source', g ->> 'reason',
    coalesce((g ->> 'first_eligible_seq')::bigint, 0), coalesce(g ->> 'status', 'active'),
    (g ->> 'priority')::int, coalesce(jsonb_typeof(g -> 'scope') = 'object', false),
    g -> 'scope' ->> 'line_kind', g -> 'scope' ->> 'service'
from customer_ledgers l, jsonb_array_elements(l.state -> 'grants') as g;

insert into credit_lots (customer_id, lot_id, origin, origin_id, currency, amount, remaining, seq, status,
    first_eligible_seq, source, reason)
select l.customer_id, x ->> 'lot_id', x ->> 'origin', x ->> 'origin_id', x -> 'amount' ->> 'currency',
    (x -> 'amount' ->> 'amount')::numeric, (x -> 'remaining' ->> 'amount')::numeric, (x ->> 'seq')::bigint,
    coalesce(x ->> 'status', 'active'), coalesce((x ->> 'first_eligible_seq')::bigint, 0),
    x ->> 'source', x ->> 'reason'
from customer_ledgers l, jsonb_array_elements(l.state -> 'lots') as x;

insert into credit_invoices (customer_id, invoice_id, currency, total, issued_on, seq, sort_order, status,
    regenerated_from, line_count)
select l.customer_id, i ->> 'invoice_id', i -> 'total' ->> 'currency', (i -> 'total' ->> 'amount')::numeric,
    (i ->> 'issued_on')::date, (i ->> 'seq')::bigint, (i ->> 'order')::bigint, i ->> 'status',
    i ->> 'regenerated_from', jsonb_array_length(coalesce(i -> 'lines', '[]'::jsonb))
from customer_ledgers l, jsonb_array_elements(l.state -> 'invoices') as i;

insert into credit_invoice_lines (customer_id, invoice_id, n, line_id, kind, service, amount)
select l.customer_id, i ->> 'invoice_id', n, x ->> 'line_id', x ->> 'kind', x ->> 'service',
    (x -> 'amount' ->> 'amount')::numeric
from customer_ledgers l, jsonb_array_elements(l.state -> 'invoices') as i,
    jsonb_array_elements(coalesce(i -> 'lines', '[]'::jsonb)) with ordinality as t(x, n);

insert into credit_payments (customer_id, payment_id, invoice_id, currency, amount, received_on, status)
select l.customer_id, p ->> 'payment_id', p ->> 'invoice_id', p -> 'amount' ->> 'currency',
    (p -> 'amount' ->> 'amount')::numeric, (p ->> 'received_on')::date, p ->> 'status'
from customer_ledgers l, jsonb_array_elements(l.state -> 'payments') with ordinality as t(p, n)
order by l.customer_id, n;

insert into credit_applications (customer_id, application_id, invoice_id, source_type, source_id, currency,
    amount, part_count)
select l.customer_id, a ->> 'application_id', a ->> 'invoice_id', a ->> 'source_type', a ->> 'source_id',
    a -> 'amount' ->> 'currency', (a -> 'amount' ->> 'amount')::numeric,
    jsonb_array_length(coalesce(a -> 'lines', '[]'::jsonb))
from customer_ledgers l, jsonb_array_elements(l.state -> 'applications') with ordinality as t(a, n)
order by l.customer_id, n;

insert into credit_application_lines (customer_id, application_id, n, line_id, amount)
select l.customer_id, a ->> 'application_id', n, x ->> 'line_id', (x -> 'amount' ->> 'amount')::numeric
from customer_ledgers l, jsonb_array_elements(l.state -> 'applications') as a,
    jsonb_array_elements(coalesce(a -> 'lines', '[]'::jsonb)) with ordinality as t(x, n);

-- Released before the upgrade: the message that released it is not in the snapshot.
insert into credit_application_releases (customer_id, application_id, released_by)
select l.customer_id, a ->> 'application_id', 'before 0002_open_items'
from customer_ledgers l, jsonb_array_elements(l.state -> 'applications') as a
where a ->> 'status' = 'released';

insert into credit_refunds (customer_id, refund_id, currency, amount, status)
select l.customer_id, r ->> 'refund_id', r -> 'amount' ->> 'currency', (r -> 'amount' ->> 'amount')::numeric,
    r ->> 'status'
from customer_ledgers l, jsonb_array_elements(l.state -> 'refunds') as r;

insert into credit_deductions (customer_id, deduction_id, currency, amount)
select l.customer_id, d ->> 'deduction_id', d -> 'amount' ->> 'currency', (d -> 'amount' ->> 'amount')::numeric
from customer_ledgers l, jsonb_array_elements(l.state -> 'deductions') as d;

-- The snapshot is no longer written: keeping it would leave a second, stale truth.
drop table customer_ledgers;
