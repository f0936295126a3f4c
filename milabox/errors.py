"""One exception hierarchy. Each message is one line a user can act on; only cli.py prints them."""


class MilaboxError(Exception):
    """Base of every error milabox raises on purpose. ``str(err)`` is the one-line user message."""


class ConfigError(MilaboxError):
    """A benchmark or vendor definition file, or a command-line value, is invalid."""


class UnknownBenchmark(ConfigError):
    """A benchmark, group, tag or suite name matches nothing."""


class UnknownVendor(ConfigError):
    """A vendor name is neither a platform nor a maker milabox knows."""


class EngineError(MilaboxError):
    """The container engine is unreachable or refused a request."""


class EngineLost(EngineError):
    """The engine stopped answering while milabox used it (stopped, restarted, crashed): a temporary failure."""


class BaseImageMissing(MilaboxError):
    """A vendor's base image is not present and cannot be pulled."""


class ImageNotBuilt(MilaboxError):
    """An image a command needs is not on the engine; the message says how to build, load or pull it."""


class BuildError(MilaboxError):
    """An image build failed; the message names the benchmark and the failing step."""


class RunError(MilaboxError):
    """A run could not be carried out (not a benchmark failure: those are recorded, not raised)."""


class ResultsError(MilaboxError):
    """A run folder or one of its files is missing or malformed."""


class ShipError(MilaboxError):
    """A bundle, results pack or registry transfer was refused (damaged, tampered with, incomplete) or cannot be made."""
