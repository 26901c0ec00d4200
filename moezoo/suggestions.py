"""Error messages that suggest what the user probably meant (`closest_names` lives in the torch-free
`moezoo_cli`, which the ``moezoo`` command imports without `moezoo`)."""

from moezoo_cli.suggestions import closest_names

__all__ = ["closest_names"]
