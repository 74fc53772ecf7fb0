"""Prefect flows over the clickpose, selection and storage libraries.

The environment Prefect and FiftyOne need on these machines is set before Prefect is imported.
"""
from clickpose.settings import apply_environment_defaults

apply_environment_defaults()
