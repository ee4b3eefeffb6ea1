"""target-klaviyo: a Singer target that upserts profiles into a Klaviyo list."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("target-klaviyo")
except PackageNotFoundError:
    __version__ = "0.0.0"
