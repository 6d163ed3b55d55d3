"""Exact solvers (CP-SAT, branch and bound, brute force) for small instances, one module per problem."""
