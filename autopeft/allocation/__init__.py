"""Sensitivity- and importance-based rank allocation: profiles, allocators, allocated LoRA.

The ``allocation:`` block of a search-space file is part of the space schema
(:class:`autopeft.space.allocation.AllocationSpec`).
"""

from autopeft.allocation.allocators import RankLimits, allocate_ranks, allocation_params
from autopeft.allocation.profiles import Profile, calibration_batches, gradient_profiles

__all__ = [
    "Profile",
    "RankLimits",
    "allocate_ranks",
    "allocation_params",
    "calibration_batches",
    "gradient_profiles",
]
