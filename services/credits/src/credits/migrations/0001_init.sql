-- One row per customer: the whole CustomerLedger (credits.customer) as a JSON snapshot,
-- read with SELECT ... FOR UPDATE and written back by every message that changes it.
-- Amounts inside are decimal strings, so nothing is lost to binary floating point.
create table customer_ledgers (
    customer_id text        primary key,
    state       jsonb       not null,
    version     bigint      not null default 1,
    updated_at  timestamptz not null default now()
);

-- The double-entry ledger, append-only: one row per entry, with the message that caused it.
create table ledger_entries (
    entry_id    text        primary key,
    customer_id text        not null,
    cause_id    text        not null,  -- the message id
    cause_type  text        not null,  -- the message type
    cause_day   date        not null,  -- the envelope's occurred_at day (UTC)
    memo        text        not null,
    recorded_at timestamptz not null default now(),
    position    bigserial
);
create index ledger_entries_by_customer on ledger_entries (customer_id, position);

-- The postings of each entry; they sum to zero per entry and currency.
create table ledger_postings (
    entry_id  text    not null references ledger_entries,
    n         int     not null,
    account   text    not null,
    amount    numeric not null,
    currency  text    not null,
    primary key (entry_id, n)
);

-- Read model: every posted invoice credits knows, as of its last InvoiceBalanceChanged.
create table invoice_balances (
    customer_id      text    not null,
    invoice_id       text    not null,
    currency         text    not null,
    total            numeric not null,
    credits_applied  numeric not null,
    payments_applied numeric not null,
    amount_due       numeric not null,
    status           text    not null check (status in ('open', 'paid', 'voided')),
    issued_on        date,
    regenerated_from text,
    sort_order       bigint  not null,  -- "oldest first": Invoice.order, then seq
    seq              bigint  not null,
    primary key (customer_id, invoice_id)  -- credits keeps each customer's invoices apart
);
create index invoice_balances_by_customer on invoice_balances (customer_id, sort_order, seq);

-- Read model: promotional credit and credit balance per customer and currency.
create table credit_balances (
    customer_id    text    not null,
    currency       text    not null,
    promotional    numeric not null,
    credit_balance numeric not null,
    primary key (customer_id, currency)
);
