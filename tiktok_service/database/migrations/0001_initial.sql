-- 0001: livestreams (written by the operator) and events (written by the persisters).
--
-- Applied by tiktok_service.persister.migrate inside one transaction, so a failure leaves
-- nothing half-created. Never edit an applied migration: add 0002_*.sql instead.

CREATE TYPE livestream_status AS ENUM (
    'pending',
    'waiting_for_live',
    'connecting',
    'live',
    'reconnecting',
    'backing_off',
    'paused',
    'stopped',
    'ended',
    'failed'
);

-- One row per Livestream custom resource; `id` is the CR's metadata.uid.
CREATE TABLE livestreams (
    id              uuid PRIMARY KEY,
    workspace_id    text,
    username        text NOT NULL,
    status          livestream_status NOT NULL DEFAULT 'pending',
    room_id         bigint,
    viewer_count    integer,
    event_counts    jsonb NOT NULL DEFAULT '{}'::jsonb,
    connected_at    timestamptz,
    disconnected_at timestamptz,
    last_event_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    reason          text,
    message         text
);

CREATE INDEX livestreams_workspace_idx ON livestreams (workspace_id, created_at);

-- One row per event, whatever its type; `payload` is the whole CloudEvent as published.
--
-- `id` is uuid5(EVENTS_NAMESPACE, "<livestream uuid>:<event id>") computed by the
-- persister, so storing an event that is already stored (a replay, a reclaimed entry, two
-- persisters racing) is a no-op through ON CONFLICT (id) DO NOTHING.
--
-- `livestream_id` deliberately has NO foreign key to livestreams: events are written by the
-- persisters, livestream rows by the operator, and the two are not ordered. An event must
-- never be refused (and so stall its consumer group) because the operator has not written
-- the livestream row yet, or has deleted it already. Orphans are possible by design and are
-- cleaned up by retention, not by a constraint.
CREATE TABLE events (
    id            uuid PRIMARY KEY,
    livestream_id uuid NOT NULL,
    event_id      text NOT NULL,
    event_type    text NOT NULL,
    room_id       bigint,
    user_id       bigint,
    username      text,
    payload       jsonb NOT NULL,
    "timestamp"   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

-- "Events of a livestream by time", keyset-paginated on (timestamp, id).
CREATE INDEX events_livestream_time_idx ON events (livestream_id, "timestamp", id);
-- "Events of a type by time" across livestreams (gift reports, moderation).
CREATE INDEX events_type_time_idx ON events (event_type, "timestamp");
