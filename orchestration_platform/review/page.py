"""HTML of the review page: one card per pending version, its metrics against the served model (inline
SVG), lineage, the evaluation reason, who asked and when, the expiry, and the decision form."""

from __future__ import annotations

from datetime import datetime
from html import escape

from orchestration_platform.lib.ml.approval_policy import Reviewer
from orchestration_platform.lib.ml.approvals import Approval

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c2430}
header{background:#1c2430;color:#fff;padding:12px 24px;display:flex;justify-content:space-between}
main{max-width:980px;margin:24px auto;padding:0 16px}
.card{background:#fff;border:1px solid #d8dde4;border-radius:8px;padding:16px 20px;margin-bottom:20px}
.dev{background:#b3261e;color:#fff;padding:8px 24px;font-weight:600}
.note{padding:10px 14px;border-radius:6px;margin-bottom:16px}
.ok{background:#e3f4e8;border:1px solid #7cc296}.refused{background:#fdecea;border:1px solid #e5908a}
dl{display:grid;grid-template-columns:190px 1fr;gap:4px 12px;margin:12px 0}dt{color:#5b6573}
textarea{width:100%;min-height:60px}button{padding:8px 18px;margin-right:8px;border-radius:6px;border:0}
.approve{background:#1f7a3d;color:#fff}.reject{background:#b3261e;color:#fff}
.policy{color:#5b6573;font-size:0.9em}
"""


def metrics_svg(metrics: dict) -> str:
    """Bars: the candidate's holdout ROC AUC and average precision, the served model's ROC AUC on the
    same holdout (or the 0.6 baseline when nothing is served)."""
    candidate = metrics.get("candidate") or {}
    served = metrics.get("served") or {}
    bars: list[tuple[str, float | None, str]] = [
        ("candidate ROC AUC", candidate.get("roc_auc"), "#1f6feb"),
        (
            f"served v{served['version']} ROC AUC" if served.get("version", "none") != "none" else "baseline ROC AUC",
            served.get("roc_auc") if served.get("version", "none") != "none" else 0.6,
            "#8b949e",
        ),
        ("candidate avg. precision", candidate.get("average_precision"), "#54aeff"),
    ]
    width, row = 520, 34
    parts = [f'<svg role="img" aria-label="metrics against the served model" width="{width}" '
             f'height="{row * len(bars) + 24}" xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    for i, (label, value, colour) in enumerate(bars):
        y = i * row + 6
        parts.append(f'<text x="0" y="{y + 17}" font-size="12">{escape(label)}</text>')
        if isinstance(value, int | float):
            length = max(0.0, min(1.0, float(value))) * 300
            parts.append(f'<rect x="180" y="{y + 4}" width="{length:.1f}" height="18" fill="{colour}"/>')
            parts.append(f'<text x="{186 + length:.1f}" y="{y + 17}" font-size="12">{value:.4f}</text>')
        else:
            parts.append(f'<text x="180" y="{y + 17}" font-size="12" fill="#5b6573">not measured</text>')
    parts.append(f'<line x1="180" y1="0" x2="180" y2="{row * len(bars) + 6}" stroke="#1c2430"/>')
    parts.append(f'<text x="180" y="{row * len(bars) + 20}" font-size="10">0</text>'
                 f'<text x="472" y="{row * len(bars) + 20}" font-size="10">1.0</text></svg>')  # fmt: skip
    return "".join(parts)


def _time(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def _partitions(raw: str) -> str:
    keys = [k for k in (raw or "").split(",") if k]
    if not keys:
        return "unknown"
    return f"{len(keys)} hours, {escape(keys[0])} to {escape(keys[-1])}"


def approval_card(approval: Approval, approved_by: list[str], csrf_token: str) -> str:
    m = approval.metrics or {}
    anchor = escape(f"{approval.model_name}-{approval.version}")
    votes = ", ".join(escape(v) for v in approved_by) or "none yet"
    return f"""
<section class="card" id="{anchor}" data-version="{escape(approval.version)}">
  <h2>{escape(approval.model_name)} version {escape(approval.version)}</h2>
  {metrics_svg(m)}
  <dl>
    <dt>evaluation</dt><dd class="reason">{escape(str(m.get("evaluation_reason", "not recorded")))}</dd>
    <dt>feature partitions</dt><dd>{_partitions(str(m.get("feature_partitions", "")))}</dd>
    <dt>feature data version</dt><dd><code>{escape(str(m.get("feature_data_version", "unknown")))}</code></dd>
    <dt>files (sha256)</dt><dd><code>{escape(approval.fingerprint[:16])}</code></dd>
    <dt>asked by</dt><dd class="requested-by">{escape(approval.requested_by or "unknown")}</dd>
    <dt>asked at</dt><dd>{_time(approval.requested_at)}</dd>
    <dt>expires at</dt><dd>{_time(approval.expires_at)}</dd>
    <dt>approvals</dt><dd class="votes">{len(approved_by)} of {approval.approvals_required}: {votes}</dd>
  </dl>
  <form method="post" action="decide">
    <input type="hidden" name="csrf_token" value="{escape(csrf_token)}">
    <input type="hidden" name="model_name" value="{escape(approval.model_name)}">
    <input type="hidden" name="version" value="{escape(approval.version)}">
    <label>Comment<textarea name="comment" maxlength="2000"></textarea></label>
    <p><button class="approve" name="decision" value="approve">Approve</button>
       <button class="reject" name="decision" value="reject">Reject</button></p>
  </form>
</section>"""


def render(
    *, reviewer: Reviewer, cards: list[str], policy: str, message: str = "", refused: bool = False
) -> str:
    dev = (
        f'<div class="dev">DEVELOPMENT IDENTITY: deciding as "{escape(reviewer.name)}" (REVIEW_DEV_USER); '
        "no sign-in, never used in prod</div>"
        if reviewer.via == "dev-identity"
        else ""
    )
    note = (
        f'<div class="note {"refused" if refused else "ok"}" role="status">{escape(message)}</div>' if message else ""
    )
    body = "".join(cards) or '<p class="card">No model version awaits approval.</p>'
    groups = f" (groups: {escape(', '.join(reviewer.groups))})" if reviewer.groups else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Model approvals</title><style>{STYLE}</style></head><body>
<header><strong>Model approvals</strong><span class="who">signed in as {escape(reviewer.name)}{groups}</span></header>
{dev}<main>{note}<p class="policy">Policy: {escape(policy)}</p>{body}</main></body></html>"""
