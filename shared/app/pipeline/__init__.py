"""Pipelines: their definitions, the catalog admins edit, and the messages that carry a
task's work to the runner (`app.runner`, which runs them and may import this package; this
package never imports it)."""
