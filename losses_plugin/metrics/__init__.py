"""Registered by suffix; see losses_plugin.registration."""
