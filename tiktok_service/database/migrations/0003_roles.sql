-- 0003: one role per component, each allowed only what its code does (least privilege).
--
-- These are NOLOGIN group roles holding the grants; the roles components log in as are
-- members of them, made (with their passwords) by `tiktok-service access`, so passwords
-- never live in a migration. Roles belong to the whole cluster, so creating one that
-- exists (another database of the cluster was migrated first) is not an error.
-- The migrations themselves run as the schema's owner, the only role that may run DDL.
-- A later migration that adds a table grants on it here-style, explicitly, per role.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['tiktok_persister', 'tiktok_operator', 'tiktok_api'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database
            END;
        END IF;
    END LOOP;
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO tiktok_persister, tiktok_operator, tiktok_api', current_database()
    );
    -- The persister merges batches with duplicates through a temporary staging table.
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO tiktok_persister', current_database());
END
$$;

-- Nobody but the owner creates objects (already PostgreSQL 15's default).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO tiktok_persister, tiktok_operator, tiktok_api;

-- Every component checks at start that the schema is as new as its code.
GRANT SELECT ON schema_migrations TO tiktok_persister, tiktok_operator, tiktok_api;

-- Persister: appends events (COPY, or INSERT ... ON CONFLICT (id) DO NOTHING, which needs
-- to read the conflict target: `id` only); never reads their content, changes or deletes them.
GRANT INSERT ON events TO tiktok_persister;
GRANT SELECT (id) ON events TO tiktok_persister;

-- Operator: the single writer of livestreams rows (upsert, close; RETURNING reads them).
GRANT SELECT, INSERT, UPDATE ON livestreams TO tiktok_operator;

-- API: reads livestream rows, event history and API keys. Keys are made and revoked by
-- `tiktok-service api-keys` with the owner's credentials, not by the API server.
GRANT SELECT ON livestreams, events, api_keys TO tiktok_api;
