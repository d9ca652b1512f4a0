"""Marquee gateway: the public HTTP API in front of search, explainer and the catalog stream."""
