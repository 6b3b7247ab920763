-- The invoicing service's tables arrive with its handlers (see the service issue).
create table if not exists invoicing_placeholder (id int);
