"""Object storage (COS): client uploads, task outputs kept out of the database, and the
cleanup that keeps the bucket's cost down.

`objects` is the port (what the rest of the app may ask of a bucket); `cos` implements it
on cos-python-sdk-v5, imported only by the functions that touch the bucket.
"""
