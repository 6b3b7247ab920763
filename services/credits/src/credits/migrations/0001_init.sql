-- The credits service's tables arrive with its handlers (see the service issue).
create table if not exists credits_placeholder (id int);
