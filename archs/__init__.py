"""Architectures, installed as ``losses_plugin.archs``; registered by the ``*_arch.py`` suffix."""
