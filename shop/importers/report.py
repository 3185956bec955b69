"""What an import did or would do: counts per entity, and why rows were left out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ENTITIES = ("categories", "products", "variants", "tiers", "coupons", "orders", "keys")
# Details kept for the printout (duplicates, conflicts); the counts stay exact beyond it.
NOTES_MAX = 200


@dataclass
class Tally:
    new: int = 0
    already: int = 0  # imported by an earlier run
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason → rows

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] += count


@dataclass
class ImportSummary:
    source: str
    dry_run: bool
    tallies: dict[str, Tally] = field(default_factory=lambda: {name: Tally() for name in ENTITIES})
    notes: list[str] = field(default_factory=list)
    notes_dropped: int = 0

    def __getitem__(self, entity: str) -> Tally:
        return self.tallies[entity]

    def note(self, text: str) -> None:
        if len(self.notes) < NOTES_MAX:
            self.notes.append(text)
        else:
            self.notes_dropped += 1

    def lines(self) -> list[str]:
        """The printout: a table of counts, then the reasons and details."""
        head = f"{self.source} → this shop" + (" (dry run: nothing was written)" if self.dry_run else "")
        rows = [("", "new", "already imported", "duplicates", "skipped")]
        for name in ENTITIES:
            tally = self.tallies[name]
            rows.append((name, str(tally.new), str(tally.already), str(tally.duplicates),
                         str(sum(tally.skipped.values()))))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        out = [head, ""]
        out += ["  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row))
                for row in rows]
        reasons = [(name, reason, n) for name in ENTITIES for reason, n in self.tallies[name].skipped.most_common()]
        if reasons:
            out += ["", "skipped:"] + [f"  {name}: {n} {reason}" for name, reason, n in reasons]
        if self.notes:
            out += ["", "details:"] + [f"  {note}" for note in self.notes]
            if self.notes_dropped:
                out.append(f"  … and {self.notes_dropped} more")
        return out
