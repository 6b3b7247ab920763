create table customers (
    customer_id   text primary key,
    currency      text not null,
    name          text,
    billing_day   int  not null check (billing_day between 1 and 28),
    price_list_id text
);

create table price_lists (
    price_list_id text primary key,
    prices        jsonb not null
);

create table subscriptions (
    customer_id     text    not null,
    subscription_id text    not null,
    name            text    not null,
    fee             numeric not null,
    currency        text    not null,
    starts_on       date    not null,
    ends_on         date,
    primary key (customer_id, subscription_id)
);

-- One-time charges waiting for the customer's next invoice to close.
create table pending_charges (
    customer_id text    not null,
    charge_id   text    not null,
    description text    not null,
    amount      numeric not null,
    currency    text    not null,
    added_seq   bigserial,
    primary key (customer_id, charge_id)
);

create table invoices (
    invoice_id       text primary key,
    customer_id      text not null,
    kind             text not null check (kind in ('period', 'one_time', 'regenerated')),
    currency         text not null,
    status           text not null check (status in ('pending', 'closed', 'posted', 'paid', 'voided')),
    period_start     date not null,
    period_end       date not null,
    issued_on        date,
    subtotal         numeric,
    total            numeric,
    amount_due       numeric,
    rule_set_id      text,
    rule_set_version int,
    regenerated_from text,
    created_seq      bigserial
);
create unique index invoices_one_per_period on invoices (customer_id, period_start) where kind = 'period';
create index invoices_pending on invoices (period_end) where status = 'pending';
create index invoices_by_customer on invoices (customer_id, created_seq);

-- Usage lines accumulate `raw_amount` (unrounded) while pending; `amount` is set at close.
create table invoice_lines (
    invoice_id      text    not null references invoices,
    line_id         text    not null,
    kind            text    not null,
    description     text    not null default '',
    amount          numeric,
    raw_amount      numeric,
    quantity        numeric,
    unit_price      numeric,
    service         text,
    unit            text,
    destination     text,
    subscription_id text,
    tax_code        text,
    rule_id         text,
    late            boolean not null default false,
    position        bigserial,
    primary key (invoice_id, line_id)
);
