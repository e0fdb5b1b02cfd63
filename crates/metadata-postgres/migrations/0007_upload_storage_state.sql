-- Blob storage's own record of an upload in progress, opaque to the database: empty on the
-- file system; on S3 the multipart upload's id, its parts' ETags and the staged object that
-- holds the bytes not yet filling a part, so that any replica can continue the upload.
ALTER TABLE upload_sessions ADD COLUMN storage_state TEXT NOT NULL DEFAULT '';
