from .cmunext import CMUNeXt

__all__ = ["CMUNeXt"]
