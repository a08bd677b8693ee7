"""Tasks: runs of a pipeline that cost quota, their lifecycle, the API's views and the sweeper."""
