-- What the web UI lists repositories by: the last push and the size, kept up to date by
-- triggers so that sorting and paging 100,000 repositories reads an index, not every
-- manifest. The same table and rules as SQLite's migration of the same number (see there).
-- Writers of one repository's manifests are serialised by the lock on its row
-- (`REPOSITORY_ID`), so "the first reference to a blob in this repository" is decided alike.
CREATE TABLE repository_stats (
    repository_id BIGINT PRIMARY KEY REFERENCES repositories (id),
    last_push_at  BIGINT NOT NULL,
    size          BIGINT NOT NULL,
    manifests     BIGINT NOT NULL
);
CREATE INDEX repository_stats_by_push ON repository_stats (last_push_at, repository_id);
CREATE INDEX repository_stats_by_size ON repository_stats (size, repository_id);

INSERT INTO repository_stats (repository_id, last_push_at, size, manifests)
SELECT r.id,
       greatest(coalesce((SELECT max(m.created_at) FROM manifests m WHERE m.repository_id = r.id), 0),
                coalesce((SELECT max(t.updated_at) FROM tags t WHERE t.repository_id = r.id), 0)),
       coalesce((SELECT sum(m.size) FROM manifests m WHERE m.repository_id = r.id), 0)
         + coalesce((SELECT sum(b.size) FROM blobs b WHERE b.digest IN (
               SELECT mr.child_digest FROM manifest_references mr
               WHERE mr.repository_id = r.id AND mr.child_kind = 'blob')), 0),
       (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id)
FROM repositories r;

CREATE FUNCTION repository_stats_manifest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO repository_stats (repository_id, last_push_at, size, manifests)
        VALUES (NEW.repository_id, NEW.created_at, NEW.size, 1)
        ON CONFLICT (repository_id) DO UPDATE SET
            last_push_at = greatest(repository_stats.last_push_at, excluded.last_push_at),
            size = repository_stats.size + excluded.size,
            manifests = repository_stats.manifests + 1;
    ELSE
        UPDATE repository_stats SET size = size - OLD.size, manifests = manifests - 1
        WHERE repository_id = OLD.repository_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER repository_stats_manifest AFTER INSERT OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION repository_stats_manifest();

-- The first reference to a blob in a repository adds its size; the last one gone takes it off.
CREATE FUNCTION repository_stats_reference() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.child_kind = 'blob' AND NOT EXISTS (
            SELECT 1 FROM manifest_references mr
            WHERE mr.child_digest = NEW.child_digest AND mr.child_kind = 'blob'
              AND mr.repository_id = NEW.repository_id
              AND mr.manifest_digest <> NEW.manifest_digest) THEN
            UPDATE repository_stats
            SET size = size + coalesce((SELECT size FROM blobs WHERE digest = NEW.child_digest), 0)
            WHERE repository_id = NEW.repository_id;
        END IF;
    ELSIF OLD.child_kind = 'blob' AND NOT EXISTS (
            SELECT 1 FROM manifest_references mr
            WHERE mr.child_digest = OLD.child_digest AND mr.child_kind = 'blob'
              AND mr.repository_id = OLD.repository_id) THEN
        UPDATE repository_stats
        SET size = greatest(0, size - coalesce((SELECT size FROM blobs WHERE digest = OLD.child_digest), 0))
        WHERE repository_id = OLD.repository_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER repository_stats_reference AFTER INSERT OR DELETE ON manifest_references
    FOR EACH ROW EXECUTE FUNCTION repository_stats_reference();

CREATE FUNCTION repository_stats_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repository_stats SET last_push_at = greatest(last_push_at, NEW.updated_at)
    WHERE repository_id = NEW.repository_id;
    RETURN NULL;
END $$;
CREATE TRIGGER repository_stats_tag AFTER INSERT OR UPDATE OF updated_at ON tags
    FOR EACH ROW EXECUTE FUNCTION repository_stats_tag();
