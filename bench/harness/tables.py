"""A Markdown table of metric / value / target / result rows, and the number format its cells use."""

from typing import Any


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("PASS" if ok else "**FAIL**")


def fmt(x: Any, unit: str = "", nd: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{nd}f}{unit}"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    return f"{x}{unit}"


class Table:
    """Rows of metric / value / target / result, and the same as verdicts for latest.json."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []
        self.verdicts: list[dict[str, Any]] = []

    def row(self, metric: str, value: str, target: str = "—", ok: bool | None = None) -> None:
        """One row; ok None for a row without a target."""
        self.rows.append((metric, value, target, ok))
        self.verdicts.append({"metric": metric, "value": value, "target": target, "pass": ok})

    def markdown(self, title: str) -> str:
        """The table under a title."""
        out = [title, "", "| metric | value | target | result |", "|---|---|---|---|"]
        for metric, value, target, ok in self.rows:
            out.append(f"| {metric} | {value.replace('|', '/')} | {target} | {verdict(ok)} |")
        return "\n".join(out) + "\n"
