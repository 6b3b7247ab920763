-- Which usage events each usage line bills, by usage event id (the envelope id): one row per
-- usage event, so an id is on at most one line by construction. Ingest writes a batch's rows
-- in one statement, next to the line upsert. A regeneration moves the rows of the voided
-- invoice to its regenerated one (same line ids): a voided invoice holds its usage only until
-- it is regenerated. Usage ingested before this migration has no row.
-- No foreign key to invoice_lines: ingest writes the line and its ids in one transaction, and
-- the check cost a third of the rows' write time (about 6 µs per usage event).
create table invoice_line_usage (
    customer_id text not null,
    usage_id    uuid not null,
    invoice_id  text not null,
    line_id     text not null,
    primary key (customer_id, usage_id)
);
create index invoice_line_usage_by_line on invoice_line_usage (invoice_id, line_id);
