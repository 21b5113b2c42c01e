"""Splitting TF graphs into a host stage (strings, tables, value-shaped ops; numpy) and a
device function."""
