"""Tasks: runs of a pipeline that cost quota, their lifecycle and the API's views. The
runner (`app.runner`) moves them and may import this package; this package never imports
it."""
