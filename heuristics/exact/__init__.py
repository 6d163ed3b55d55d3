"""Exact solvers (CP-SAT, brute force) for small instances, one module per problem."""

from heuristics.exact.offload import ExactResult, brute_force_optimal, offload_optimal

__all__ = ["ExactResult", "brute_force_optimal", "offload_optimal"]
