-- What the web UI lists repositories by: the last push and the size, kept up to date by
-- triggers so that sorting and paging 100,000 repositories reads an index, not every
-- manifest.
--
-- `size` is the repository's manifests plus each blob they reference, counted once per
-- repository however many of its manifests share it. `manifests` counts its manifests: a
-- repository whose last manifest went is not listed (as the catalog does not list it).
CREATE TABLE repository_stats (
    repository_id INTEGER PRIMARY KEY REFERENCES repositories (id),
    last_push_at  INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    manifests     INTEGER NOT NULL
);
CREATE INDEX repository_stats_by_push ON repository_stats (last_push_at, repository_id);
CREATE INDEX repository_stats_by_size ON repository_stats (size, repository_id);

INSERT INTO repository_stats (repository_id, last_push_at, size, manifests)
SELECT r.id,
       max(coalesce((SELECT max(m.created_at) FROM manifests m WHERE m.repository_id = r.id), 0),
           coalesce((SELECT max(t.updated_at) FROM tags t WHERE t.repository_id = r.id), 0)),
       coalesce((SELECT sum(m.size) FROM manifests m WHERE m.repository_id = r.id), 0)
         + coalesce((SELECT sum(b.size) FROM blobs b WHERE b.digest IN (
               SELECT mr.child_digest FROM manifest_references mr
               WHERE mr.repository_id = r.id AND mr.child_kind = 'blob')), 0),
       (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id)
FROM repositories r;

CREATE TRIGGER repository_stats_manifest_put AFTER INSERT ON manifests
BEGIN
    INSERT INTO repository_stats (repository_id, last_push_at, size, manifests)
    VALUES (NEW.repository_id, NEW.created_at, NEW.size, 1)
    ON CONFLICT (repository_id) DO UPDATE SET
        last_push_at = max(last_push_at, excluded.last_push_at),
        size = size + excluded.size,
        manifests = manifests + 1;
END;

CREATE TRIGGER repository_stats_manifest_deleted AFTER DELETE ON manifests
BEGIN
    UPDATE repository_stats SET size = size - OLD.size, manifests = manifests - 1
    WHERE repository_id = OLD.repository_id;
END;

-- The first reference to a blob in a repository adds its size; the last one gone takes it off.
CREATE TRIGGER repository_stats_blob_referenced AFTER INSERT ON manifest_references
WHEN NEW.child_kind = 'blob' AND NOT EXISTS (
    SELECT 1 FROM manifest_references mr
    WHERE mr.child_digest = NEW.child_digest AND mr.child_kind = 'blob'
      AND mr.repository_id = NEW.repository_id AND mr.manifest_digest <> NEW.manifest_digest)
BEGIN
    UPDATE repository_stats
    SET size = size + coalesce((SELECT size FROM blobs WHERE digest = NEW.child_digest), 0)
    WHERE repository_id = NEW.repository_id;
END;

CREATE TRIGGER repository_stats_blob_unreferenced AFTER DELETE ON manifest_references
WHEN OLD.child_kind = 'blob' AND NOT EXISTS (
    SELECT 1 FROM manifest_references mr
    WHERE mr.child_digest = OLD.child_digest AND mr.child_kind = 'blob'
      AND mr.repository_id = OLD.repository_id)
BEGIN
    UPDATE repository_stats
    SET size = max(0, size - coalesce((SELECT size FROM blobs WHERE digest = OLD.child_digest), 0))
    WHERE repository_id = OLD.repository_id;
END;

CREATE TRIGGER repository_stats_tagged AFTER INSERT ON tags
BEGIN
    UPDATE repository_stats SET last_push_at = max(last_push_at, NEW.updated_at)
    WHERE repository_id = NEW.repository_id;
END;

CREATE TRIGGER repository_stats_retagged AFTER UPDATE OF updated_at ON tags
BEGIN
    UPDATE repository_stats SET last_push_at = max(last_push_at, NEW.updated_at)
    WHERE repository_id = NEW.repository_id;
END;
