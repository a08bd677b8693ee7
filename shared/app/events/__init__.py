"""Wrappers that turn the non-HTTP SCF events (timers, asynchronous invocations) into plain calls.

Each submodule is imported on its own by the functions that need it; none imports another,
and none pulls in the HTTP adapter, so a timer or queue function stays cheap to start.
"""
