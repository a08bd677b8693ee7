"""The database: one engine per instance (`engine`), the one transaction helper
(`transaction`), statements compiled once for the hot paths (`prepared`), the pool, table
definitions and migrations. Importing the package itself loads nothing."""
