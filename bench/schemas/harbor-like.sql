-- A database with the kinds of structure Harbor's metadata database has (written for RegistryDR's
-- tests and benchmark; not Harbor's own DDL): serial sequences, text/json/jsonb payloads,
-- BEFORE UPDATE triggers that maintain update_time, a golang-migrate bookkeeping table, foreign
-- keys, partial and unique indexes.
--
-- Usage: psql -v ON_ERROR_STOP=1 -v scale=N -f bench/schemas/harbor-like.sql DBNAME
-- scale 1 is about 2 MiB of table data; the audit log is most of it, as on a real registry.
-- Every value is derived from generate_series, so two loads at the same scale hold the same rows
-- (update_time excepted: the triggers set it to now()). Run it in an empty database as the role
-- that is to own the objects.
\set ON_ERROR_STOP on
\if :{?scale}
\else
\set scale 1
\endif

BEGIN;

-- golang-migrate's table: one row, the applied version, and whether a migration broke half-way.
CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO schema_migrations VALUES (150, false);

CREATE FUNCTION update_update_time_at_column() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    NEW.update_time = now();
    RETURN NEW;
END
$body$;

CREATE TABLE harbor_user (
    user_id serial PRIMARY KEY,
    username varchar(255) NOT NULL UNIQUE,
    email varchar(255) UNIQUE,
    password varchar(40) NOT NULL,
    realname varchar(255) NOT NULL,
    comment varchar(30),
    deleted boolean NOT NULL DEFAULT false,
    reset_uuid varchar(40),
    salt varchar(40),
    sysadmin_flag boolean NOT NULL DEFAULT false,
    password_version varchar(16) DEFAULT 'sha256',
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now()
);

CREATE TABLE project (
    project_id serial PRIMARY KEY,
    owner_id int NOT NULL REFERENCES harbor_user (user_id),
    name varchar(255) NOT NULL UNIQUE,
    registry_id int,
    deleted boolean NOT NULL DEFAULT false,
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now()
);

CREATE TABLE project_metadata (
    id serial PRIMARY KEY,
    project_id int NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    name varchar(255) NOT NULL,
    value varchar(255),
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now(),
    CONSTRAINT unique_project_id_and_name UNIQUE (project_id, name)
);

CREATE TABLE repository (
    repository_id serial PRIMARY KEY,
    name varchar(255) NOT NULL UNIQUE,
    project_id int NOT NULL REFERENCES project (project_id),
    description text,
    pull_count int NOT NULL DEFAULT 0,
    star_count int NOT NULL DEFAULT 0,
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now()
);

CREATE TABLE artifact (
    id serial PRIMARY KEY,
    project_id int NOT NULL,
    repository_id int NOT NULL REFERENCES repository (repository_id) ON DELETE CASCADE,
    repository_name varchar(255) NOT NULL,
    digest varchar(255) NOT NULL,
    type varchar(255) NOT NULL,
    media_type varchar(255) NOT NULL,
    manifest_media_type varchar(255) NOT NULL,
    artifact_type varchar(255) NOT NULL,
    size bigint,
    icon varchar(255),
    push_time timestamp DEFAULT now(),
    pull_time timestamp,
    -- Harbor keeps some JSON documents as text and others as jsonb.
    extra_attrs text,
    annotations jsonb,
    CONSTRAINT unique_artifact UNIQUE (repository_id, digest)
);
CREATE INDEX idx_artifact_push_time ON artifact (push_time);
CREATE INDEX idx_artifact_repository_name ON artifact (repository_name);

CREATE TABLE tag (
    id serial PRIMARY KEY,
    repository_id int NOT NULL,
    artifact_id int NOT NULL REFERENCES artifact (id) ON DELETE CASCADE,
    name varchar(255) NOT NULL,
    push_time timestamp DEFAULT now(),
    pull_time timestamp,
    CONSTRAINT unique_tag UNIQUE (repository_id, name)
);
CREATE INDEX idx_tag_artifact_id ON tag (artifact_id);

CREATE TABLE blob (
    id serial PRIMARY KEY,
    digest varchar(255) NOT NULL UNIQUE,
    content_type varchar(1024) NOT NULL,
    size bigint NOT NULL,
    status varchar(255) NOT NULL DEFAULT 'none',
    version bigint NOT NULL DEFAULT 0,
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now()
);
CREATE INDEX idx_status ON blob (status);
CREATE INDEX idx_version ON blob (version);

CREATE TABLE artifact_blob (
    id serial PRIMARY KEY,
    digest_af varchar(255) NOT NULL,
    digest_blob varchar(255) NOT NULL,
    creation_time timestamp DEFAULT now(),
    CONSTRAINT unique_artifact_blob UNIQUE (digest_af, digest_blob)
);

CREATE TABLE project_blob (
    id serial PRIMARY KEY,
    project_id int NOT NULL,
    blob_id int NOT NULL REFERENCES blob (id),
    creation_time timestamp DEFAULT now(),
    CONSTRAINT unique_project_blob UNIQUE (project_id, blob_id)
);

CREATE TABLE quota (
    id serial PRIMARY KEY,
    reference varchar(255) NOT NULL,
    reference_id varchar(255) NOT NULL,
    hard jsonb NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now(),
    UNIQUE (reference, reference_id)
);

CREATE TABLE quota_usage (
    id serial PRIMARY KEY,
    reference varchar(255) NOT NULL,
    reference_id varchar(255) NOT NULL,
    used jsonb NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    creation_time timestamp DEFAULT now(),
    update_time timestamp DEFAULT now(),
    UNIQUE (reference, reference_id)
);

CREATE TABLE execution (
    id serial PRIMARY KEY,
    vendor_type varchar(64) NOT NULL,
    vendor_id int,
    status varchar(16),
    status_message text,
    trigger varchar(16) NOT NULL,
    -- plain json: key order and whitespace are kept as written
    extra_attrs json,
    start_time timestamp DEFAULT now(),
    end_time timestamp,
    revision int,
    update_time timestamp DEFAULT now()
);
CREATE INDEX execution_vendor_type_vendor_id ON execution (vendor_type, vendor_id);
CREATE INDEX execution_unfinished ON execution (start_time) WHERE end_time IS NULL;

CREATE TABLE task (
    id serial PRIMARY KEY,
    execution_id int NOT NULL REFERENCES execution (id),
    job_id varchar(64),
    status varchar(16) NOT NULL,
    status_code int NOT NULL,
    status_revision int,
    status_message text,
    run_count int,
    extra_attrs json,
    creation_time timestamp DEFAULT now(),
    start_time timestamp,
    end_time timestamp,
    update_time timestamp DEFAULT now()
);
CREATE INDEX task_execution_id ON task (execution_id);

CREATE TABLE properties (
    id serial PRIMARY KEY,
    k varchar(64) NOT NULL UNIQUE,
    v text NOT NULL
);

-- The audit log: append-only, most of the database.
CREATE TABLE audit_log_ext (
    id bigserial PRIMARY KEY,
    project_id bigint,
    operation varchar(50),
    resource_type varchar(255),
    resource varchar(1024),
    username varchar(255),
    op_desc varchar(1024),
    op_result boolean DEFAULT true,
    payload text,
    source_ip varchar(255),
    op_time timestamp DEFAULT now()
);
CREATE INDEX idx_audit_log_ext_op_time ON audit_log_ext (op_time);
CREATE INDEX idx_audit_log_ext_project_id_optime ON audit_log_ext (project_id, op_time);

CREATE TRIGGER harbor_user_update_time_at_modtime BEFORE UPDATE ON harbor_user FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER project_update_time_at_modtime BEFORE UPDATE ON project FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER project_metadata_update_time_at_modtime BEFORE UPDATE ON project_metadata FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER repository_update_time_at_modtime BEFORE UPDATE ON repository FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER blob_update_time_at_modtime BEFORE UPDATE ON blob FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER quota_update_time_at_modtime BEFORE UPDATE ON quota FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER quota_usage_update_time_at_modtime BEFORE UPDATE ON quota_usage FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER execution_update_time_at_modtime BEFORE UPDATE ON execution FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();
CREATE TRIGGER task_update_time_at_modtime BEFORE UPDATE ON task FOR EACH ROW EXECUTE FUNCTION update_update_time_at_column();

-- Data. Sizes are per unit of :scale.
INSERT INTO harbor_user (username, email, password, realname, comment, sysadmin_flag, salt, creation_time, update_time)
SELECT 'user' || g, 'user' || g || '@example.com', md5('pw' || g)::varchar(40), 'Ünïcode Ñame ' || g,
       CASE WHEN g % 3 = 0 THEN 'ops' END, g = 1, md5('salt' || g)::varchar(40),
       timestamp '2023-01-01' + g * interval '1 hour', timestamp '2023-01-01' + g * interval '1 hour'
FROM generate_series(1, 20 * :scale) g;

INSERT INTO project (owner_id, name, creation_time, update_time)
SELECT 1 + (g % (20 * :scale)), 'project-' || g, timestamp '2023-02-01' + g * interval '1 day', timestamp '2023-02-01' + g * interval '1 day'
FROM generate_series(1, 10 * :scale) g;

INSERT INTO project_metadata (project_id, name, value)
SELECT p, m, CASE m WHEN 'public' THEN (p % 2 = 0)::text WHEN 'auto_scan' THEN 'true' ELSE 'low' END
FROM generate_series(1, 10 * :scale) p, unnest(ARRAY['public', 'auto_scan', 'severity']) m;

INSERT INTO repository (name, project_id, description, pull_count, creation_time, update_time)
SELECT 'project-' || (1 + g % (10 * :scale)) || '/app-' || g, 1 + g % (10 * :scale),
       CASE WHEN g % 4 = 0 THEN E'multi-line\ndescription with \'quotes\' and tabs\t' || g END, g * 7,
       timestamp '2023-03-01' + g * interval '1 minute', timestamp '2023-03-01' + g * interval '1 minute'
FROM generate_series(1, 50 * :scale) g;

INSERT INTO artifact (project_id, repository_id, repository_name, digest, type, media_type, manifest_media_type, artifact_type,
                      size, push_time, pull_time, extra_attrs, annotations)
SELECT r.project_id, r.repository_id, r.name, 'sha256:' || md5('a' || g) || md5('b' || g), 'IMAGE',
       'application/vnd.oci.image.config.v1+json', 'application/vnd.oci.image.manifest.v1+json',
       'application/vnd.oci.image.config.v1+json', 1000 + g * 13,
       timestamp '2023-04-01' + g * interval '1 minute', CASE WHEN g % 5 <> 0 THEN timestamp '2023-05-01' + g * interval '1 minute' END,
       format('{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","N=%s"]},"created":"2023-04-01T00:00:00Z"}', g),
       jsonb_build_object('org.opencontainers.image.revision', md5('rev' || g), 'org.opencontainers.image.source', 'https://example.com/' || g)
FROM generate_series(1, 200 * :scale) g
JOIN repository r ON r.repository_id = 1 + g % (50 * :scale);

INSERT INTO tag (repository_id, artifact_id, name, push_time)
SELECT a.repository_id, a.id, CASE WHEN t = 1 THEN 'v' || a.id ELSE 'latest-' || a.id END, a.push_time
FROM artifact a, generate_series(1, 2) t
WHERE t = 1 OR a.id % 3 = 0;

INSERT INTO blob (digest, content_type, size, status, version, creation_time, update_time)
SELECT 'sha256:' || md5('blob' || g) || md5('blob2' || g), 'application/vnd.oci.image.layer.v1.tar+gzip', g * 1024,
       CASE WHEN g % 50 = 0 THEN 'delete' ELSE 'none' END, g % 3,
       timestamp '2023-04-01' + g * interval '1 minute', timestamp '2023-04-01' + g * interval '1 minute'
FROM generate_series(1, 400 * :scale) g;

INSERT INTO artifact_blob (digest_af, digest_blob, creation_time)
SELECT a.digest, b.digest, a.push_time
FROM artifact a
JOIN blob b ON b.id IN (1 + (a.id * 2) % (400 * :scale), 1 + (a.id * 2 + 1) % (400 * :scale));

INSERT INTO project_blob (project_id, blob_id)
SELECT DISTINCT 1 + b.id % (10 * :scale), b.id FROM blob b;

INSERT INTO quota (reference, reference_id, hard)
SELECT 'project', p::text, jsonb_build_object('storage', CASE WHEN p % 2 = 0 THEN -1 ELSE p * 1073741824::bigint END)
FROM generate_series(1, 10 * :scale) p;
INSERT INTO quota_usage (reference, reference_id, used)
SELECT 'project', p::text, jsonb_build_object('storage', p * 1048576::bigint)
FROM generate_series(1, 10 * :scale) p;

INSERT INTO execution (vendor_type, vendor_id, status, status_message, trigger, extra_attrs, start_time, end_time, revision)
SELECT CASE g % 3 WHEN 0 THEN 'GARBAGE_COLLECTION' WHEN 1 THEN 'IMAGE_SCAN' ELSE 'REPLICATION' END, g, 
       CASE WHEN g % 7 = 0 THEN 'Running' ELSE 'Success' END, CASE WHEN g % 11 = 0 THEN 'retried: "timeout"' END,
       'MANUAL', format('{ "dry_run" : %s,  "workers": %s }', (g % 2 = 0)::text, g % 5)::json,
       timestamp '2023-06-01' + g * interval '1 hour', CASE WHEN g % 7 <> 0 THEN timestamp '2023-06-01' + g * interval '1 hour' + interval '5 minutes' END, 1
FROM generate_series(1, 50 * :scale) g;

INSERT INTO task (execution_id, job_id, status, status_code, status_revision, status_message, run_count, extra_attrs, start_time, end_time)
SELECT 1 + g % (50 * :scale), md5('job' || g)::varchar(64), 'Success', 3, 1, NULL, 1,
       json_build_object('artifact_id', g, 'report_uuids', json_build_array(md5('r' || g))),
       timestamp '2023-06-01' + g * interval '1 minute', timestamp '2023-06-01' + g * interval '1 minute' + interval '30 seconds'
FROM generate_series(1, 200 * :scale) g;

INSERT INTO properties (k, v) VALUES
    ('auth_mode', 'db_auth'), ('self_registration', 'false'), ('token_expiration', '30'),
    ('scanner_skip_update_pulltime', 'false'), ('notification_enable', 'true');

INSERT INTO audit_log_ext (project_id, operation, resource_type, resource, username, op_desc, op_result, payload, source_ip, op_time)
SELECT 1 + g % (10 * :scale), CASE g % 4 WHEN 0 THEN 'create' WHEN 1 THEN 'delete' WHEN 2 THEN 'pull' ELSE 'update' END,
       'artifact', 'project-' || (1 + g % (10 * :scale)) || '/app-' || (g % 50) || ':v' || g, 'user' || (1 + g % 20),
       'pulled artifact ' || md5('d' || g), g % 97 <> 0,
       format('{"request_id":"%s","user_agent":"containerd/1.7","bytes":%s}', md5('req' || g), g * 31),
       '10.' || (g % 250) || '.' || (g % 17) || '.' || (g % 200), timestamp '2023-07-01' + g * interval '10 seconds'
FROM generate_series(1, 8000 * :scale) g;

-- Some rows changed after they were written: the BEFORE UPDATE triggers set their update_time.
UPDATE repository SET pull_count = pull_count + 1 WHERE repository_id % 5 = 0;
UPDATE blob SET status = 'deleting', version = version + 1 WHERE id % 50 = 0;
UPDATE execution SET status = 'Error', end_time = start_time + interval '1 hour' WHERE id % 7 = 0 AND id % 14 = 0;

COMMIT;
ANALYZE;
