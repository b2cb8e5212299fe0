"""Test helpers: an in-process SSH fleet on loopback for users' tests and the demo."""

from hostbatch.testing.fleet import BEHAVIOURS, Fleet, FleetHost, FleetThread

__all__ = ["BEHAVIOURS", "Fleet", "FleetHost", "FleetThread"]
