"""The PostgreSQL schema the components share, and all SQL on its tables.

No component owns the database alone: the persister writes `events`, the operator mirrors
each Livestream into `livestreams`, and the API reads both. So the schema (`migrate`,
`migrations/`), each table's SQL (`events_repository`, `livestreams_repository`) and the
shape of an `events` row (`events_table`) live here, below the components, and none of
them imports another to reach a table.
"""
