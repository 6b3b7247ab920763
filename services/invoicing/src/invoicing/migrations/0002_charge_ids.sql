-- Every charge id a customer has used, pending or billed: a repeated charge_id is answered
-- with CommandRejected duplicate_charge (before, a second pending one hit the primary key of
-- pending_charges, and one billed already was accepted again).
create table charge_ids (
    customer_id text not null,
    charge_id   text not null,
    primary key (customer_id, charge_id)
);

insert into charge_ids (customer_id, charge_id)
select customer_id, charge_id from pending_charges
union
select i.customer_id, substr(l.line_id, length('charge:') + 1)
from invoice_lines l join invoices i using (invoice_id)
where l.kind = 'one_time' and l.line_id like 'charge:%'
on conflict do nothing;
