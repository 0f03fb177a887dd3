"""netwatch: continuously proves which Docker containers can reach which."""

__version__ = "0.1.0"
