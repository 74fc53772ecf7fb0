"""Imports each sub-command module so that it registers on the app."""
