-- A database with the kinds of structure the GitLab container registry's metadata database has
-- (written for RegistryDR's tests and benchmark; not GitLab's own DDL): eight tables
-- hash-partitioned 64 ways whose partitions live in a second schema (`partitions`), composite
-- foreign keys between partitioned tables, row triggers declared on the partitioned parents whose
-- plpgsql bodies name tables without a schema (they rely on the session's search_path), a
-- statement trigger with a transition table, and about 2,350 indexes.
--
-- Usage: psql -v ON_ERROR_STOP=1 -v scale=N -f bench/schemas/gitlab-like.sql DBNAME
-- scale 1 is about 3 MiB of table data. Every value but the review_after/deleted_at times (now())
-- is derived from generate_series. Run it in an empty database as the role that is to own the
-- objects.
\set ON_ERROR_STOP on
\if :{?scale}
\else
\set scale 1
\endif

BEGIN;

CREATE SCHEMA partitions;

CREATE TABLE schema_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL);
INSERT INTO schema_migrations
SELECT to_char(timestamp '2021-01-01' + g * interval '7 days', 'YYYYMMDDHH24MISS') || '_migration_' || g, timestamptz '2021-01-01 00:00:00+00' + g * interval '7 days'
FROM generate_series(1, 120) g;

CREATE TABLE top_level_namespaces (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    updated_at timestamptz
);

CREATE TABLE media_types (
    id smallserial PRIMARY KEY,
    media_type text NOT NULL UNIQUE
);

CREATE TABLE gc_review_after_defaults (
    event text PRIMARY KEY,
    value interval NOT NULL
);

CREATE TABLE gc_blob_review_queue (
    digest bytea PRIMARY KEY,
    review_after timestamptz NOT NULL,
    review_count int NOT NULL DEFAULT 0,
    event text NOT NULL
);
CREATE INDEX gc_blob_review_queue_review_after ON gc_blob_review_queue (review_after);

CREATE TABLE repository_deletion_log (
    id bigserial PRIMARY KEY,
    deleted_at timestamptz NOT NULL,
    repositories int NOT NULL,
    namespaces bigint[] NOT NULL
);

CREATE TABLE repositories (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL REFERENCES top_level_namespaces (id) ON DELETE CASCADE,
    parent_id bigint,
    name text NOT NULL,
    path text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    last_published_at timestamptz,
    PRIMARY KEY (top_level_namespace_id, id),
    UNIQUE (top_level_namespace_id, path)
) PARTITION BY HASH (top_level_namespace_id);

CREATE TABLE blobs (
    media_type_id smallint NOT NULL REFERENCES media_types (id),
    digest bytea NOT NULL,
    size bigint NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (digest)
) PARTITION BY HASH (digest);

CREATE TABLE manifests (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    total_size bigint NOT NULL,
    schema_version smallint NOT NULL,
    media_type_id smallint NOT NULL REFERENCES media_types (id),
    configuration_media_type_id smallint REFERENCES media_types (id),
    digest bytea NOT NULL,
    payload bytea NOT NULL,
    configuration_payload bytea,
    configuration_blob_digest bytea,
    non_conformant boolean DEFAULT false,
    subject_id bigint,
    artifact_type text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (top_level_namespace_id, repository_id, id),
    UNIQUE (top_level_namespace_id, repository_id, digest),
    FOREIGN KEY (top_level_namespace_id, repository_id) REFERENCES repositories (top_level_namespace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (configuration_blob_digest) REFERENCES blobs (digest)
) PARTITION BY HASH (top_level_namespace_id);

CREATE TABLE manifest_references (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    parent_id bigint NOT NULL,
    child_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (top_level_namespace_id, repository_id, id),
    UNIQUE (top_level_namespace_id, repository_id, parent_id, child_id),
    CHECK (parent_id <> child_id),
    FOREIGN KEY (top_level_namespace_id, repository_id, parent_id) REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE,
    FOREIGN KEY (top_level_namespace_id, repository_id, child_id) REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);

CREATE TABLE layers (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    manifest_id bigint NOT NULL,
    digest bytea NOT NULL,
    size bigint NOT NULL,
    media_type_id smallint NOT NULL REFERENCES media_types (id),
    PRIMARY KEY (top_level_namespace_id, repository_id, id),
    UNIQUE (top_level_namespace_id, repository_id, manifest_id, digest),
    FOREIGN KEY (top_level_namespace_id, repository_id, manifest_id) REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE,
    FOREIGN KEY (digest) REFERENCES blobs (digest)
) PARTITION BY HASH (top_level_namespace_id);

CREATE TABLE tags (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    manifest_id bigint NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    PRIMARY KEY (top_level_namespace_id, repository_id, id),
    UNIQUE (top_level_namespace_id, repository_id, name),
    FOREIGN KEY (top_level_namespace_id, repository_id, manifest_id) REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);

CREATE TABLE repository_blobs (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    blob_digest bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (top_level_namespace_id, repository_id, id),
    UNIQUE (top_level_namespace_id, repository_id, blob_digest),
    FOREIGN KEY (top_level_namespace_id, repository_id) REFERENCES repositories (top_level_namespace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (blob_digest) REFERENCES blobs (digest) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);

CREATE TABLE gc_blobs_configurations (
    id bigserial NOT NULL,
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    manifest_id bigint NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (digest, id),
    UNIQUE (digest, top_level_namespace_id, repository_id, manifest_id),
    FOREIGN KEY (top_level_namespace_id, repository_id, manifest_id) REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE,
    FOREIGN KEY (digest) REFERENCES blobs (digest) ON DELETE CASCADE
) PARTITION BY HASH (digest);

-- A non-partitioned table with a composite foreign key into a partitioned one.
CREATE TABLE gc_manifest_review_queue (
    top_level_namespace_id bigint NOT NULL,
    repository_id bigint NOT NULL,
    manifest_id bigint NOT NULL,
    review_after timestamptz NOT NULL,
    review_count int NOT NULL DEFAULT 0,
    event text NOT NULL,
    PRIMARY KEY (top_level_namespace_id, repository_id, manifest_id),
    FOREIGN KEY (top_level_namespace_id, repository_id, manifest_id) REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE
);
CREATE INDEX gc_manifest_review_queue_review_after ON gc_manifest_review_queue (review_after);

-- Secondary indexes, declared on the parents and so built on every partition.
CREATE INDEX repositories_parent_id ON repositories (top_level_namespace_id, parent_id);
CREATE INDEX repositories_name ON repositories (name);
CREATE INDEX repositories_created_at ON repositories (created_at);
CREATE INDEX repositories_last_published_at ON repositories (last_published_at) WHERE last_published_at IS NOT NULL;
CREATE INDEX blobs_media_type_id ON blobs (media_type_id);
CREATE INDEX blobs_created_at ON blobs (created_at);
CREATE INDEX manifests_configuration_blob_digest ON manifests (top_level_namespace_id, repository_id, configuration_blob_digest);
CREATE INDEX manifests_media_type_id ON manifests (media_type_id);
CREATE INDEX manifests_created_at ON manifests (created_at);
CREATE INDEX manifests_subject_id ON manifests (top_level_namespace_id, repository_id, subject_id) WHERE subject_id IS NOT NULL;
CREATE INDEX manifest_references_child_id ON manifest_references (top_level_namespace_id, repository_id, child_id);
CREATE INDEX manifest_references_created_at ON manifest_references (created_at);
CREATE INDEX layers_digest ON layers (digest);
CREATE INDEX layers_media_type_id ON layers (media_type_id);
CREATE INDEX layers_size ON layers (size);
CREATE INDEX tags_manifest_id ON tags (top_level_namespace_id, repository_id, manifest_id);
CREATE INDEX tags_updated_at ON tags (updated_at);
CREATE INDEX tags_name_pattern ON tags (name text_pattern_ops);
CREATE INDEX repository_blobs_blob_digest ON repository_blobs (blob_digest);
CREATE INDEX repository_blobs_created_at ON repository_blobs (created_at);
CREATE INDEX gc_blobs_configurations_manifest ON gc_blobs_configurations (top_level_namespace_id, repository_id, manifest_id);

-- 64 hash partitions of each, in the second schema.
SELECT format('CREATE TABLE partitions.%I PARTITION OF public.%I FOR VALUES WITH (MODULUS 64, REMAINDER %s)', t || '_p_' || r, t, r)
FROM unnest(ARRAY['repositories', 'blobs', 'manifests', 'manifest_references', 'layers', 'tags', 'repository_blobs', 'gc_blobs_configurations']) t,
     generate_series(0, 63) r
ORDER BY t, r
\gexec

-- The functions name their tables without a schema, as the registry's own migrations do: they
-- work under the application's search_path and fail under pg_restore's empty one.
CREATE FUNCTION gc_review_after(e text) RETURNS timestamptz LANGUAGE sql STABLE AS $body$
    SELECT now() + coalesce((SELECT value FROM gc_review_after_defaults WHERE event = e), interval '1 day')
$body$;

CREATE FUNCTION gc_track_blob_uploads() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO gc_blob_review_queue (digest, review_after, event)
        VALUES (NEW.digest, gc_review_after('blob_upload'), 'blob_upload')
        ON CONFLICT (digest) DO UPDATE SET review_after = excluded.review_after, event = 'blob_upload';
    RETURN NULL;
END
$body$;

CREATE FUNCTION gc_track_manifest_uploads() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO gc_manifest_review_queue (top_level_namespace_id, repository_id, manifest_id, review_after, event)
        VALUES (NEW.top_level_namespace_id, NEW.repository_id, NEW.id, gc_review_after('manifest_upload'), 'manifest_upload');
    RETURN NULL;
END
$body$;

CREATE FUNCTION gc_track_configuration_blobs() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO gc_blobs_configurations (top_level_namespace_id, repository_id, manifest_id, digest)
        VALUES (NEW.top_level_namespace_id, NEW.repository_id, NEW.id, NEW.configuration_blob_digest)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$body$;

CREATE FUNCTION track_tag_publication() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    UPDATE repositories SET last_published_at = greatest(last_published_at, NEW.created_at)
        WHERE top_level_namespace_id = NEW.top_level_namespace_id AND id = NEW.repository_id;
    RETURN NULL;
END
$body$;

CREATE FUNCTION gc_track_deleted_tags() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF EXISTS (SELECT 1 FROM manifests
               WHERE top_level_namespace_id = OLD.top_level_namespace_id AND repository_id = OLD.repository_id AND id = OLD.manifest_id) THEN
        INSERT INTO gc_manifest_review_queue (top_level_namespace_id, repository_id, manifest_id, review_after, event)
            VALUES (OLD.top_level_namespace_id, OLD.repository_id, OLD.manifest_id, gc_review_after('tag_delete'), 'tag_delete')
            ON CONFLICT (top_level_namespace_id, repository_id, manifest_id) DO UPDATE SET review_after = excluded.review_after, event = 'tag_delete';
    END IF;
    RETURN NULL;
END
$body$;

CREATE FUNCTION log_deleted_repositories() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO repository_deletion_log (deleted_at, repositories, namespaces)
        SELECT now(), count(*), array_agg(DISTINCT top_level_namespace_id ORDER BY top_level_namespace_id) FROM deleted_rows
        HAVING count(*) > 0;
    RETURN NULL;
END
$body$;

-- Row triggers on the partitioned parents (cloned to every partition) and one statement trigger
-- with a transition table.
CREATE TRIGGER gc_track_blob_uploads_trigger AFTER INSERT ON blobs FOR EACH ROW EXECUTE FUNCTION gc_track_blob_uploads();
CREATE TRIGGER gc_track_manifest_uploads_trigger AFTER INSERT ON manifests FOR EACH ROW EXECUTE FUNCTION gc_track_manifest_uploads();
CREATE TRIGGER gc_track_configuration_blobs_trigger AFTER INSERT ON manifests FOR EACH ROW
    WHEN (NEW.configuration_blob_digest IS NOT NULL) EXECUTE FUNCTION gc_track_configuration_blobs();
CREATE TRIGGER track_tag_publication_trigger AFTER INSERT ON tags FOR EACH ROW EXECUTE FUNCTION track_tag_publication();
CREATE TRIGGER gc_track_deleted_tags_trigger AFTER DELETE ON tags FOR EACH ROW EXECUTE FUNCTION gc_track_deleted_tags();
CREATE TRIGGER log_deleted_repositories_trigger AFTER DELETE ON repositories
    REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION log_deleted_repositories();

-- Data, through the parents, so the triggers fill the review queues as the registry would.
INSERT INTO gc_review_after_defaults VALUES
    ('blob_upload', interval '1 day'), ('manifest_upload', interval '1 day'), ('tag_delete', interval '1 day'),
    ('manifest_delete', interval '1 day'), ('layer_delete', interval '1 day');

INSERT INTO media_types (media_type) VALUES
    ('application/vnd.docker.distribution.manifest.v2+json'), ('application/vnd.docker.distribution.manifest.list.v2+json'),
    ('application/vnd.oci.image.manifest.v1+json'), ('application/vnd.oci.image.index.v1+json'),
    ('application/vnd.docker.container.image.v1+json'), ('application/vnd.oci.image.config.v1+json'),
    ('application/vnd.docker.image.rootfs.diff.tar.gzip'), ('application/vnd.oci.image.layer.v1.tar+gzip');

INSERT INTO top_level_namespaces (name, created_at)
SELECT 'group-' || g, timestamptz '2022-01-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, 8 * :scale) g;

INSERT INTO repositories (top_level_namespace_id, parent_id, name, path, created_at, updated_at)
SELECT 1 + g % (8 * :scale), NULL, 'image-' || g, 'group-' || (1 + g % (8 * :scale)) || '/project-' || (g / 3) || '/image-' || g,
       timestamptz '2022-02-01 00:00:00+00' + g * interval '1 hour', CASE WHEN g % 4 = 0 THEN timestamptz '2022-03-01 00:00:00+00' + g * interval '1 hour' END
FROM generate_series(1, 32 * :scale) g;

INSERT INTO blobs (media_type_id, digest, size, created_at)
SELECT CASE WHEN g % 10 = 0 THEN 5 ELSE 7 END, sha256(('blob-' || g)::bytea), 512 + g * 97,
       timestamptz '2022-02-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 400 * :scale) g;

-- Manifests: every tenth blob is an image configuration; one in seven manifests is an index.
INSERT INTO manifests (top_level_namespace_id, repository_id, total_size, schema_version, media_type_id, configuration_media_type_id,
                       digest, payload, configuration_payload, configuration_blob_digest, non_conformant, created_at)
SELECT r.top_level_namespace_id, r.id, 1000 + g, 2, CASE WHEN g % 7 = 0 THEN 4 ELSE 3 END, CASE WHEN g % 7 = 0 THEN NULL ELSE 6 END,
       sha256(('manifest-' || g)::bytea),
       convert_to(format('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{"digest":"sha256:%s"}]}', md5('m' || g)), 'UTF8'),
       CASE WHEN g % 7 = 0 THEN NULL ELSE convert_to(format('{"architecture":"amd64","os":"linux","rootfs":{"diff_ids":["%s"]}}', md5('c' || g)), 'UTF8') END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE sha256(('blob-' || (10 * (1 + g % (40 * :scale))))::bytea) END,
       g % 50 = 0, timestamptz '2022-04-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 160 * :scale) g
JOIN repositories r ON r.id = 1 + g % (32 * :scale);

INSERT INTO manifest_references (top_level_namespace_id, repository_id, parent_id, child_id, created_at)
SELECT p.top_level_namespace_id, p.repository_id, p.id, c.id, p.created_at
FROM manifests p
JOIN LATERAL (SELECT m.id FROM manifests m
              WHERE m.top_level_namespace_id = p.top_level_namespace_id AND m.repository_id = p.repository_id AND m.id <> p.id AND m.media_type_id = 3
              ORDER BY m.id LIMIT 2) c ON true
WHERE p.media_type_id = 4;

INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, digest, size, media_type_id)
SELECT m.top_level_namespace_id, m.repository_id, m.id, sha256(('blob-' || (1 + (m.id * 3 + l) % (400 * :scale)))::bytea), 4096 * (m.id + l), 8
FROM manifests m, generate_series(0, 2) l
WHERE m.media_type_id = 3;

INSERT INTO tags (top_level_namespace_id, repository_id, manifest_id, name, created_at, updated_at)
SELECT m.top_level_namespace_id, m.repository_id, m.id, CASE WHEN t = 0 THEN 'v1.' || m.id ELSE 'latest-' || m.id END,
       m.created_at + t * interval '1 second', CASE WHEN m.id % 6 = 0 THEN m.created_at + interval '1 day' END
FROM manifests m, generate_series(0, 1) t
WHERE t = 0 OR m.id % 4 = 0;

INSERT INTO repository_blobs (top_level_namespace_id, repository_id, blob_digest, created_at)
SELECT top_level_namespace_id, repository_id, digest, timestamptz '2022-05-01 00:00:00+00'
FROM (SELECT DISTINCT top_level_namespace_id, repository_id, digest FROM layers) d;

-- Deletions fire the delete triggers: the tag-delete review and the statement trigger's log.
DELETE FROM tags WHERE id % 17 = 0;
DELETE FROM repositories WHERE id = 1 + 5 % (32 * :scale);

COMMIT;
ANALYZE;
