"""Typed errors of the data core; each knows its HTTP status (mapped once, in handlers.py)."""

from __future__ import annotations


class DsdataError(Exception):
    """Base class: a message a data scientist can act on."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidReference(DsdataError):
    """A malformed dataset name, version or target path."""

    status = 400


class BodyTooLarge(DsdataError):
    status = 413


class UnknownDataset(DsdataError):
    status = 404


class NotADataset(UnknownDataset):
    """A registry artifact of another type (a model, ...): not listed as a dataset."""


class UnknownVersion(DsdataError):
    status = 404


class WorkspaceConflict(DsdataError):
    """The target holds local changes (or files not from a pull) and --force was not given."""

    status = 409


class RegistryUnavailable(DsdataError):
    """The registry (git) or its DVC remote cannot be reached or read."""

    status = 502


class CorruptData(DsdataError):
    """Downloaded data does not match its checksum."""

    status = 502
