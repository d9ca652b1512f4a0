"""Marquee search: semantic search, movie lookup and similar movies over the Chroma index."""
