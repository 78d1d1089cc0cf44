"""Small frozen values passed between steps: symbols, reports, feature-store references and job failures."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

__all__ = [
    "SYMBOL_PATTERN",
    "CalendarGap",
    "CleaningReport",
    "DataSummary",
    "FeatureSetRef",
    "InvalidSymbolError",
    "JobFailure",
    "RunFailed",
    "SelectionReport",
    "failed_jobs_message",
    "redact_credentials",
    "validate_symbol",
]

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,15}$")
# scheme://user:password@host: everything between the scheme and the last '@' of the word is credentials (a
# password may hold an unescaped '/' or '@').
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"]*@")
CREDENTIALS_HIDDEN = "<credentials hidden>"


class InvalidSymbolError(ValueError):
    """A symbol does not match SYMBOL_PATTERN, so it may never become part of a path."""


def redact_credentials(text: str) -> str:
    """`text` with the user and password of every URI in it replaced (mongodb://<credentials hidden>@db:27017).

    Applied to every error message and console line the product prints, whatever produced it: a value of a
    mistyped configuration key has no declared type that would mark it secret.
    """
    return _CREDENTIALS.sub(rf"\1{CREDENTIALS_HIDDEN}@", text)


def validate_symbol(symbol: str) -> str:
    """Return `symbol` unchanged if it is a valid ticker, else raise InvalidSymbolError naming it."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: must match {SYMBOL_PATTERN.pattern} (upper-case letters, digits, . _ -)"
        )
    return symbol


@dataclass(frozen=True)
class CalendarGap:
    """Trading sessions missing between two consecutive bars."""

    after: date
    """the last bar before the hole."""
    before: date
    """the first bar after it."""
    sessions: int
    """sessions the market held strictly between the two bars."""


@dataclass(frozen=True)
class CleaningReport:
    """Every change `clean` made to one symbol's prices."""

    symbol: str
    rows_in: int
    rows_out: int
    fixes: dict[str, int] = field(default_factory=dict)
    """rule name -> number of rows (or values) it changed; rules that changed nothing are absent."""
    flagged_jumps: tuple[date, ...] = ()
    """days whose |log return| exceeded the jump threshold (flagged, not changed)."""
    zero_volume_days: tuple[date, ...] = ()
    """trading days with a volume of 0 (flagged, kept; volume features read log(1 + volume))."""
    gaps: tuple[CalendarGap, ...] = ()
    """holes of more than `max_gap_sessions` of the market's trading sessions between consecutive bars."""

    @property
    def total_fixes(self) -> int:
        return sum(self.fixes.values())


@dataclass(frozen=True)
class SelectionReport:
    """What `select` kept and why it dropped the rest (fitted on the train split only)."""

    kept: tuple[str, ...]
    dropped: dict[str, str] = field(default_factory=dict)
    """feature name -> reason (constant, correlated with X, beyond max_features, ...)."""


@dataclass(frozen=True)
class FeatureSetRef:
    """A reference to one symbol's stored feature set: what tasks after `store` pass around."""

    symbol: str
    manifest_path: Path
    """the snapshot's manifest.json; its Parquet file sits beside it."""
    content_hash: str
    """sha256 over the snapshot's files and the symbol's selected features: changes whenever either changes."""
    features: tuple[str, ...]
    label: str
    rows: dict[str, int]
    """split name (train/val/test/latest/all) -> row count."""

    @property
    def directory(self) -> Path:
        return self.manifest_path.parent

    def split_path(self, split: str) -> Path:
        """The file `<split>.parquet`: `all` holds every part; a snapshot written before that has one per split."""
        return self.directory / f"{split}.parquet"


@dataclass(frozen=True)
class DataSummary:
    """One symbol's outcome of the data pipeline, for the CLI summary and later reports."""

    ref: FeatureSetRef
    cleaning: CleaningReport
    selection: SelectionReport
    features_engineered: int
    cached_tasks: int
    total_tasks: int


@dataclass(frozen=True)
class JobFailure:
    """One job of a run that failed, and why."""

    symbol: str
    model_type: str
    """the model type of the job; "" for a step that concerns the whole symbol."""
    step: str
    """where it failed: "tune", "train", "evaluate", "deploy", ..."""
    error: str
    """the error in words, any URI's credentials hidden (it lands in reports, logs and alerts)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "error", redact_credentials(self.error))

    def __str__(self) -> str:
        job = " ".join(part for part in (self.model_type, self.symbol) if part)
        return f"{self.step} {job}: {self.error}"


class RunFailed(RuntimeError):
    """A run that finished with failed jobs; it still produced its report, carried as `outcome`.

    Raised at the end of a flow so that its run ends Failed (and the CLI exits 1) with a message such as
    "2 of 12 jobs failed", while callers keep everything the run did produce.
    """

    def __init__(self, message: str, outcome: Any = None) -> None:
        super().__init__(message)
        self.outcome = outcome

    def __reduce__(self) -> tuple[Any, ...]:  # keep `outcome` when Prefect persists the exception
        return type(self), (str(self), self.outcome)


def failed_jobs_message(failures: list[JobFailure], jobs: int) -> str:
    """"2 of 12 jobs failed; first: <the first failure>"."""
    return f"{len(failures)} of {jobs} jobs failed" + (f"; first: {failures[0]}" if failures else "")
