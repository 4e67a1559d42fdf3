"""HTTP routes: thin glue from validated inputs to the data layer (`LivestreamService`, `Feeds`)."""
