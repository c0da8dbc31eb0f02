"""Sensitivity- and importance-based rank allocation: profiles, allocators, space knobs."""

from autopeft.allocation.allocators import RankLimits, allocate_ranks, allocation_params
from autopeft.allocation.profiles import Profile, calibration_batches, gradient_profiles
from autopeft.space.allocation import AllocationSpec

__all__ = [
    "AllocationSpec",
    "Profile",
    "RankLimits",
    "allocate_ranks",
    "allocation_params",
    "calibration_batches",
    "gradient_profiles",
]
