"""Splitting TF graphs into a host stage (strings, tables; numpy) and a device function."""
