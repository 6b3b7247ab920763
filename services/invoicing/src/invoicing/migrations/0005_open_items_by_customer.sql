-- Per message, invoicing reads a customer's open items only, never its posted history:
-- its pending and closed invoices (placing usage, checking a fee or a charge against the
-- sum cap, a currency change), the newest billed period invoice (read backwards on
-- invoices_one_per_period), and a voided invoice's regeneration. Each is an index lookup
-- that starts with customer_id, so its cost does not grow with the invoices a customer has
-- been billed, nor with the other customers' pending invoices. (Before, usage and charges
-- read every period invoice of the customer, and a regeneration check the whole table.)
create index invoices_open_by_customer on invoices (customer_id, status, period_start)
    where status in ('pending', 'closed');
create index invoices_regenerated_from on invoices (customer_id, regenerated_from)
    where regenerated_from is not null;
