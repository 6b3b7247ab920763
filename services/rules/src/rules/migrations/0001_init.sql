-- The rules service's tables arrive with its handlers (see the service issue).
create table if not exists rules_placeholder (id int);
