"""The API's shapes, one module per resource: request bodies and queries (validated and
normalised before any service runs) and responses (built from the services' domain values).
Route modules import them; nothing below the route modules does."""
