-- The payments service's tables arrive with its handlers (see the service issue).
create table if not exists payments_placeholder (id int);
