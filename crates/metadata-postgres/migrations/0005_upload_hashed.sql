-- A chunk of an upload is answered once it is written and recorded; hashing it may finish a
-- moment later, while the client sends the next chunk. So the saved `hash_state` may cover
-- fewer bytes than `received`: `hashed` says how many. An upload continued without the hasher
-- that was running (after a restart, say) hashes the rest from the staged bytes first.
ALTER TABLE upload_sessions ADD COLUMN hashed BIGINT NOT NULL DEFAULT 0;
UPDATE upload_sessions SET hashed = received;
