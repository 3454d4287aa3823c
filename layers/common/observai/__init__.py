"""ObservAI Hub shared package: the common Lambda layer, organised by domain."""

__version__ = "0.1.0"
