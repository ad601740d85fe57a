"""The validation report: a table for people (rich) and JSON for machines."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from i2f_deploy.contract import IMAGE_EMBEDDINGS, LOGITS, NUM_ROUTED
from i2f_deploy.validate.runner import Validation

NO_LOOPS = "; no click loops (they need an object mask: the built-in samples have one, --images do not)"


def to_json(validation: Validation, extra: dict) -> dict:
    return {
        "artifact_dir": str(validation.artifact_dir),
        "target_size": validation.size,
        "backends": validation.backends,
        "kernels": validation.kernels,
        "tolerances": dataclasses.asdict(validation.tolerances),
        "gates": {backend: gate_text(validation, backend) for backend in validation.backends},
        "passed": validation.passed,
        "failures": validation.failures,
        "flips": [r.to_dict() for r in validation.reports if r.verdict == "flip"],
        "cases": [r.to_dict() for r in validation.reports],
        **extra,
    }


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")


def gate_text(validation: Validation, backend: str) -> str:
    """The gate ``backend``'s encoder was judged by, in words: only the checks that ran."""
    t = validation.tolerances
    precision = validation.encoder_precision[backend]
    looped = any(loop.backend == backend for loop in validation.loops)
    if precision == "f32":
        loops = ", NoC equal" if looped else NO_LOOPS
        return (f"{backend} f32 encoder: embeddings within atol {t.image_embeddings.atol:g}, edge maps within the "
                f"tolerated share, every mask IoU vs reference >= {t.edge_maps_mask_iou}{loops}")
    loops = (f", mean mask IoU >= {t.reduced_mask_iou} over each click loop, NoC within {t.reduced_noc_clicks:g} click(s)"
             if looped else NO_LOOPS)
    return (f"{backend} {precision} encoder vs the f32 reference (end effect only): mask IoU >= {t.reduced_mask_iou} "
            f"on every prompt state{loops}")


def print_gates(validation: Validation, console: Console) -> None:
    for backend in validation.backends:
        console.print(f"gate: {gate_text(validation, backend)}", highlight=False, soft_wrap=True)
    for path, kernels in validation.kernels.items():
        console.print(f"custom ops on {path}: {kernels}", highlight=False)


def print_table(validation: Validation, console: Console) -> None:
    table = Table(title=f"validate {validation.artifact_dir}")
    for column in ("backend", "part", "case", "max abs", "mismatch", "IoU", "routed", "verdict"):
        table.add_column(column)
    for report in validation.reports:
        main = report.outputs.get(LOGITS) or report.outputs.get(IMAGE_EMBEDDINGS)
        routed = next((d for d in report.decisions if d.name == NUM_ROUTED), None)
        colour = {"pass": "green", "flip": "yellow", "fail": "red"}[report.verdict]
        table.add_row(
            report.backend,
            report.part,
            report.case,
            f"{main.max_abs:.2e}" if main else "",
            f"{main.mismatch_share:.2%}" if main else "",
            f"{main.iou:.4f}" if main and main.iou is not None else (f"{min(report.end_effect.values()):.4f}" if report.end_effect else ""),
            str(routed.candidate[0]) if routed else "",
            f"[{colour}]{report.verdict}[/{colour}]",
        )
    console.print(table)
    if validation.loops:
        loops = Table(title="interactive loops (PyTorch drives, official click protocol)")
        for column in ("backend", "sample", "clicks", "min IoU vs reference", "mean IoU", "NoC reference", "NoC backend", "verdict"):
            loops.add_column(column)
        for loop in validation.loops:
            verdict = "[red]fail[/red]" if loop.failures else "[green]pass[/green]"
            nocs = [" ".join(f"{k}:{v}" for k, v in n.items()) for n in (loop.reference_noc, loop.backend_noc)]
            loops.add_row(loop.backend, loop.sample, str(loop.clicks), f"{loop.min_iou_vs_reference:.4f}",
                          f"{loop.mean_iou_vs_reference:.4f}", *nocs, verdict)
        console.print(loops)
    print_gates(validation, console)
    for failure in validation.failures:
        console.print(f"[red]FAIL[/red] {failure}", soft_wrap=True)
    console.print("[green]PASSED[/green]" if validation.passed else "[red]FAILED[/red]")
