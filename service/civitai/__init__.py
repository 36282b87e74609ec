"""Everything that talks to CivitAI: the JSON API client and the one rate-limit gate all calls share."""

from .client import CivitaiClient, make_session
from .ratelimit import RateGate, parse_retry_after

__all__ = ["CivitaiClient", "RateGate", "make_session", "parse_retry_after"]
