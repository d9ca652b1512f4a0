"""Marquee embedder: consumes catalog events in a consumer group and keeps Chroma in step."""
