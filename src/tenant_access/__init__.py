"""tenant-access: the Azure API Management tenant access API, self-hosted."""

__version__ = "0.1.0"
