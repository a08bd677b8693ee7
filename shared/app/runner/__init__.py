"""The pipeline runner: the pipeline-worker's consumer, the upstream calls it makes, and the
saga sweeper that recovers what a lost message or a dead worker left behind."""
