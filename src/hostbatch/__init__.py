"""hostbatch: run commands and move files on many hosts and network devices at once over SSH."""

from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectTimeout,
    HostbatchError,
    HostKeyError,
    InventoryError,
    MissingExtraError,
    SelectionError,
    TransportError,
    UsageError,
)
from hostbatch.models import (
    Command,
    Credentials,
    Event,
    Finished,
    Host,
    HostResult,
    OutputChunk,
    Progress,
    Secret,
    Started,
    Status,
    Transfer,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Command",
    "CommandTimeout",
    "ConnectError",
    "ConnectTimeout",
    "Credentials",
    "Event",
    "Finished",
    "Host",
    "HostKeyError",
    "HostResult",
    "HostbatchError",
    "InventoryError",
    "MissingExtraError",
    "OutputChunk",
    "Progress",
    "Secret",
    "SelectionError",
    "Started",
    "Status",
    "Transfer",
    "TransportError",
    "UsageError",
    "__version__",
]
