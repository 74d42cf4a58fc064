-- The process that holds the refresh lease (boot, pid, start time), so that the next
-- process on the host can tell a dead holder's lease from a live one.
ALTER TABLE class_oauth_grants ADD COLUMN lease_holder TEXT;
