-- 0002: API keys. Each key is scoped to one workspace; only the SHA-256 of the key is
-- stored (the key itself is shown once, when `tiktok-service api-keys create` makes it).
--
-- The key is 256 random bits, so an unsalted fast hash is enough: there is nothing to
-- guess from a leaked hash, and a lookup stays one index probe per request.

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    name         text NOT NULL DEFAULT '',
    key_hash     bytea NOT NULL UNIQUE,
    key_prefix   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id, created_at);
