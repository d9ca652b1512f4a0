"""What every Marquee service needs: event contracts, settings base, logging, health helpers."""
