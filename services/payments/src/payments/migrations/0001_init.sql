-- Offline payments received for a customer; `reversed` once the check bounced.
create table payments (
    customer_id     text    not null,
    payment_id      text    not null,
    invoice_id      text,
    amount          numeric not null,
    currency        text    not null,
    method          text    not null check (method in ('cash', 'check', 'bank_transfer', 'other')),
    reference       text,
    received_on     date    not null,
    status          text    not null check (status in ('recorded', 'reversed')),
    reversal_reason text,
    created_seq     bigserial,
    primary key (customer_id, payment_id)
);

-- Deductions of promotional credit payments recorded (credits decides what it can take).
create table deductions (
    customer_id  text    not null,
    deduction_id text    not null,
    amount       numeric not null,
    currency     text    not null,
    reason       text    not null,
    grant_id     text,
    status       text    not null check (status in ('recorded')),
    created_seq  bigserial,
    primary key (customer_id, deduction_id)
);

-- Refunds of credit balance: requested, then recorded or failed on credits' answer.
create table refunds (
    customer_id    text    not null,
    refund_id      text    not null,
    amount         numeric not null,
    currency       text    not null,
    method         text    not null check (method in ('cash', 'check', 'bank_transfer', 'other')),
    reference      text,
    status         text    not null check (status in ('requested', 'recorded', 'failed')),
    paid_out       numeric,
    failure_reason text,
    created_seq    bigserial,
    primary key (customer_id, refund_id)
);

-- Invoices heard of on invoicing.events: currency (once an event names it) and latest status.
create table known_invoices (
    customer_id text not null,
    invoice_id  text not null,
    currency    text,
    status      text not null check (status in ('pending', 'closed', 'posted', 'paid', 'voided')),
    primary key (customer_id, invoice_id)
);
