"""Converters between jaxhub modules and TensorFlow formats.

This package imports TensorFlow; the core ``jaxhub`` package never does.
"""
