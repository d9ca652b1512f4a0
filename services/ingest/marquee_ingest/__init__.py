"""Marquee ingest: TMDB and catalog files to ``MovieFetched``/``MovieDeleted`` events.

The Python API is in ``marquee_ingest.ingest`` (``ingest_file``, ``ingest_demo``,
``ingest_tmdb``, ``delete_movies``); ``marquee-ingest`` is the command line around it.
"""
