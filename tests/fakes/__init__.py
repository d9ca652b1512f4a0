"""Fakes of external services, served over real HTTP for tests of real clients."""
