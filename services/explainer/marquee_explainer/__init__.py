"""Marquee explainer: grounded "why this?" explanations (placeholder until its issue lands)."""
