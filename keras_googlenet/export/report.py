"""What `export_model` returns: one `ArtifactResult` per format in an `ExportReport`."""

from __future__ import annotations

import dataclasses
import sys


class ExportError(RuntimeError):
    """Some formats failed or missed a bound; `report` holds the figures of every format."""

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
    int8_layers: list | None = None  # tflite-int8: the layers worst quantized, worst first

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
        return {result.format: result for result in self.results}[fmt]

    def summary(self):
        """A plain-text table: format, status, size, verification figures."""
        lines = [f"{'format':<15} {'status':<7} {'size':>10}  verification"]
        for r in self.results:
            size_text = f"{r.card['file_size_bytes'] / 1e6:.2f} MB" if r.card else "-"
            lines.append(f"{r.format:<15} {'ok' if r.ok else 'FAILED':<7} {size_text:>10}  "
                         f"{format_verification(r.verification)}"
                         + (f"\n{'':<35}error: {r.error}" if r.error else "")
                         + "".join(f"\n{'':<35}WARNING: {w}" for w in r.warnings)
                         + _format_int8_layers(r.int8_layers))
        return "\n".join(lines)


def _format_int8_layers(layers):
    """The int8 layer report's lines: a name to pass to `int8_float_layers` per layer."""
    if not layers:
        return ""
    lines = [f"\n{'':<35}int8 layers by quantization error (RMSE / scale; "
             "--int8-float-layers NAME keeps one in float):"]
    lines += [f"\n{'':<37}{e['layer']:<28} {e['rmse_per_scale']:8.3f}  {e['op']}" for e in layers]
    return "".join(lines)


def format_verification(v):
    """One line of a format's verification figures and of the bounds it missed."""
    if not v:
        return "skipped"
    parts = [f"max|Δp|={v['max_abs_diff']:.2e}",
             f"top-1 agreement={v['top1_agreement']:.2%} on {v['samples']} {v['data']} images"]
    labelled = v.get("keras_accuracy") is not None  # agreement is then reported, not a bound
    if labelled:
        parts.append(f"top-1 accuracy keras={v['keras_accuracy']:.2%} "
                     f"artefact={v['accuracy']:.2%} (drop {v['accuracy_drop']:.2f} pt)")
    elif v.get("confident_agreement") is not None and v["data"] != "random":
        parts.append(f"{v['confident_agreement']:.2%} on the {v['confident_samples']} where "
                     f"Keras' top-1 leads by {v['confident_margin']}")
    if "uint8_signature_max_abs_diff" in v:
        parts.append(f"uint8 signature max|Δp|={v['uint8_signature_max_abs_diff']:.2e}")
    for check in v.get("checks", []):
        if check["enforced"] and not check["passed"]:
            parts.append(f"MISSED {_describe_miss(check, v)}")
        elif not check["enforced"] and not labelled:
            parts.append(f"({check['metric']} bound not enforced: {check['note']})")
    return "; ".join(parts)


def missed_bounds(v):
    """The line that refuses a format: every enforced bound its figures `v` missed."""
    missed = [c for c in v["checks"] if c["enforced"] and not c["passed"]]
    return "verification bound missed: " + "; ".join(_describe_miss(c, v) for c in missed)


def _describe_miss(check, v):
    metric, value, bound = check["metric"], check["value"], check["bound"]
    if metric == "accuracy_drop":
        return (f"top-1 accuracy {v['accuracy']:.2%} against Keras' {v['keras_accuracy']:.2%} "
                f"on {v['samples']} labelled images, a drop of {value:.2f} pt > {bound:g} pt "
                "(max_accuracy_drop / --max-accuracy-drop)")
    if metric == "top1_agreement":
        return (f"top-1 agreement {value:.2%} < {bound:.2%} on the {v['confident_samples']} "
                f"images where Keras' top-1 leads by {v['confident_margin']}")
    return f"{metric}={value:.3g} > {bound:g}"


def log_progress(verbose, message):
    """One progress line on stderr when `verbose`."""
    if verbose:
        print(message, file=sys.stderr, flush=True)
