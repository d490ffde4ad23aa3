"""odibi: a declarative build engine for data pipelines."""

__version__ = "0.1.0"
