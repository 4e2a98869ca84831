"""What `export_model` returns: one `ArtifactResult` per format in an `ExportReport`."""

from __future__ import annotations

import dataclasses
import sys


class ExportError(RuntimeError):
    """Some formats failed to convert or missed a verification bound.

    `report` holds every format's figures, including the ones that succeeded.
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class ArtifactResult:
    """The outcome for one format."""

    format: str
    path: str | None = None  # the published artefact; None if nothing was published
    card_path: str | None = None
    card: dict | None = None
    verification: dict | None = None
    error: str | None = None
    seconds: float = 0.0
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return self.error is None


@dataclasses.dataclass
class ExportReport:
    out_dir: str
    results: list

    @property
    def ok(self):
        return all(r.ok for r in self.results)

    def __getitem__(self, fmt):
        for result in self.results:
            if result.format == fmt:
                return result
        raise KeyError(fmt)

    def summary(self):
        """A plain-text table: format, status, size, verification figures."""
        lines = [f"{'format':<15} {'status':<7} {'size':>10}  verification"]
        for r in self.results:
            size = r.card["file_size_bytes"] if r.card else None
            size_text = f"{size / 1e6:.2f} MB" if size is not None else "-"
            lines.append(
                f"{r.format:<15} {'ok' if r.ok else 'FAILED':<7} {size_text:>10}  "
                f"{format_verification(r.verification)}"
                + (f"\n{'':<35}error: {r.error}" if r.error else "")
                + "".join(f"\n{'':<35}WARNING: {w}" for w in r.warnings)
            )
        return "\n".join(lines)


def format_verification(v):
    if not v:
        return "skipped"
    parts = [f"max|Δp|={v['max_abs_diff']:.2e}",
             f"top-1 agreement={v['top1_agreement']:.2%} on {v['samples']} {v['data']} images"]
    if v.get("keras_accuracy") is not None:
        parts.append(f"accuracy keras={v['keras_accuracy']:.2%} artefact={v['accuracy']:.2%}")
    if "uint8_signature_max_abs_diff" in v:
        parts.append(f"uint8 signature max|Δp|={v['uint8_signature_max_abs_diff']:.2e}")
    for check in v.get("checks", []):
        if not check["enforced"]:
            parts.append(f"({check['metric']} bound not enforced: {check['note']})")
        elif not check["passed"]:
            parts.append(f"MISSED {check['metric']} bound {check['bound']}")
    return "; ".join(parts)


def log_progress(verbose, message):
    """One progress line on stderr when `verbose`."""
    if verbose:
        print(message, file=sys.stderr, flush=True)
