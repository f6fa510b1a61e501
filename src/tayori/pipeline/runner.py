"""The runner: every step's verdict merged into one decision, keeping every reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tayori.pipeline.steps import Client, Step, StepPolicy, apply
from tayori.pipeline.verdicts import Action, Verdict


@dataclass(frozen=True, slots=True)
class Decision:
    """The most severe verdict decides; the others stay as reasons (for the outcome's
    detail and the member's "why"), and every score adds up."""

    verdicts: tuple[Verdict, ...] = ()

    @property
    def action(self) -> Action:
        return self.decisive.action if self.decisive else Action.ACCEPT

    @property
    def decisive(self) -> Verdict | None:
        if not self.verdicts:
            return None
        # max keeps the first of equals: earlier stages (the connecting host) name the reason.
        return max(self.verdicts, key=lambda v: v.action.severity)

    @property
    def score(self) -> float:
        return sum(v.score for v in self.verdicts)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.reason for v in self.verdicts))

    def detail(self) -> str:
        return "; ".join(f"{v.reason}: {v.detail}" if v.detail else v.reason for v in self.verdicts)

    def plus(self, more: Iterable[Verdict | None]) -> Decision:
        return Decision((*self.verdicts, *(v for v in more if v is not None)))


def merge(*decisions: Decision) -> Decision:
    return Decision(tuple(v for d in decisions for v in d.verdicts))


async def run_steps(steps: Sequence[tuple[Step, StepPolicy]], client: Client) -> Decision:
    """Run steps in order, each under its policy. All run even after a refusal, so that
    every reason is recorded (Mailman's rule: collect reasons, do not stop at the first)."""
    verdicts = [apply(policy, await step.check(client)) for step, policy in steps]
    return Decision(tuple(v for v in verdicts if v is not None))
