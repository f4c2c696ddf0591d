"""The package's version, on its own so that any module can name it without loading the front end."""

__version__ = "0.1.0"
