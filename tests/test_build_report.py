"""The build summary groups row problems by kind without cutting a reason in half."""

from __future__ import annotations

from mm_skin.report import BuildReport


def test_summary_groups_reasons_and_keeps_parenthesised_details():
    report = BuildReport()
    for row, kept in ((3, 2), (7, 2), (9, 5)):
        report.warn("VQA.csv", row, "question", "Q?", f"duplicate of row {kept} (kept: same answer)")
    report.skip("caption.csv", 4, "image", "a.png", "unreadable image: cannot identify image file")
    report.skip("caption.csv", 8, "image", "b.png", "unreadable image: truncated")
    summary = report.summary()
    assert "3 warnings (rows written): duplicate of row N (kept: same answer) x3" in summary
    assert "2 rows NOT written: unreadable image x2" in summary
