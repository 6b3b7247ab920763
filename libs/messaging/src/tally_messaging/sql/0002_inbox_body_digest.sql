-- The digest of each handled message's body: the same id arriving with another body is
-- a reused id (dead-lettered with its reason), not a redelivery (dropped in silence).
-- Null for rows from before this column: those count as the same body.
alter table tally_inbox add column body_digest bytea;
