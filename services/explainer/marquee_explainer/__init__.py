"""Marquee explainer: grounded "why this?" explanations for recommendations and search hits."""
