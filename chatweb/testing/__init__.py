"""Test support for the suite (fixtures and helpers); the root conftest.py wires it in."""
