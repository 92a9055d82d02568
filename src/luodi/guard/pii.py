"""PII as a guard check: the data stage's detectors (luodi.data.ops.pii), reported as spans.

`mask_pii` only returns masked text; the guard needs where each item is (to merge it with
other masks, to log its span, to hold back a stream tail). `PiiDetector.find` runs the same
detectors in the same order as `PiiMasker.mask`: e-mails first, found from each '@', then
the numeric pattern over the text with each e-mail replaced by a same-length "[EEE…]" (the
numeric pattern only looks at a character or two around a number, where "[EEE]" and
"[EMAIL]" look alike), validated by the same classifiers and allow list. So masking the
spans it reports gives exactly `mask_pii(text)` (a test checks this).

It reaches into PiiMasker's internals because the data module does not yet expose spans; a
public `PiiMasker.find(text, pos)` there would let this module shrink to a few lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from luodi.data.ops import pii as data_pii
from luodi.guard.base import CHECKS, Hit

if TYPE_CHECKING:
    from luodi.guard.policy import GuardPolicy

CATEGORY = {t: f"pii.{t.lower()}" for t in data_pii.ALL_TYPES}
"""pii.email, pii.phone, pii.id, pii.bank_card, pii.ip; masks are the data stage's [EMAIL] ..."""

# the longest an e-mail can be: a 64-character local part, '@', a 253-character domain
_EMAIL_MAX = 64 + 1 + 253


def _max_width(rx: re.Pattern[str] | None) -> int:
    if rx is None:
        return 0
    try:
        from re import _parser  # type: ignore[attr-defined]

        return int(_parser.parse(rx.pattern, rx.flags).getwidth()[1])
    except Exception:  # pragma: no cover - a Python without re._parser
        return 64


def _is_email_char(ch: str) -> bool:
    return ch == "@" or data_pii._EMAIL_LOCAL.match(ch) is not None


class PiiDetector:
    """E-mails, phones, resident IDs, bank cards and IPv4 addresses, minus `allow`."""

    def __init__(self, allow: list[str] | tuple[str, ...] = ()) -> None:
        self._m = data_pii.PiiMasker(allow)
        self.allow_count = len(self._m.allow)
        # the numeric pattern's guards look two characters back and two ahead
        self.context = 3
        self.reach = _max_width(self._m._numeric) + 2

    def categories(self) -> list[str]:
        """pii.<type> for every PII type."""
        return [CATEGORY[t] for t in data_pii.ALL_TYPES]

    def _emails(self, text: str, pos: int) -> list[tuple[int, int, bool]]:
        # the control flow of PiiMasker._mask_emails, collecting spans (and whether each is
        # allowed) instead of masking
        spans: list[tuple[int, int, bool]] = []
        done = pos
        at = text.find("@", pos)
        while at >= 0:
            local = data_pii._EMAIL_LOCAL.search(text, max(done, at - 64), at)
            domain = data_pii._EMAIL_DOMAIN.match(text, at + 1)
            if local and domain:
                allowed = self._m._allowed(text[local.start() : domain.end()])
                spans.append((local.start(), domain.end(), allowed))
                if not allowed:
                    done = domain.end()
                at = text.find("@", domain.end())
            else:
                at = text.find("@", at + 1)
        return spans

    def find(self, text: str, pos: int = 0) -> list[Hit]:
        """PII items starting at or after `pos`, in text order, with shields for allowed
        items and rejected candidates; a hit keeps no PII text."""
        found = self._emails(text, pos) if self._m._emails and "@" in text else []
        hits = [Hit(s, e, "" if ok else CATEGORY["EMAIL"], None) for s, e, ok in found]
        emails = [(s, e) for s, e, ok in found if not ok]  # what mask() replaces first
        rx = self._m._numeric
        if rx is None or data_pii._HAS_DIGIT.search(text, pos) is None:
            return hits
        scan = text
        if emails:
            parts: list[str] = []
            last = 0
            for s, e in emails:
                parts += [text[last:s], "[", "E" * (e - s - 2), "]"]
                last = e
            parts.append(text[last:])
            scan = "".join(parts)
        classify, allowed, types = self._m._classify, self._m._allowed, self._m.types
        for m in rx.finditer(scan, pos):
            s = m.group()
            fn = classify.get(m.lastgroup or "")
            kind = "PHONE" if fn is None else fn(s)  # the phone branches need no check
            ok = kind is not None and kind in types and not allowed(s)
            hits.append(Hit(m.start(), m.end(), CATEGORY[kind] if ok else "", None))
        if found:
            hits.sort()
        return hits

    def stable_before(self, text: str) -> int:
        """Numbers are bounded by the pattern's width; an e-mail may still be growing in the
        trailing run of e-mail characters, so hits from its start on are not final."""
        n = len(text)
        i = n
        while i > 0 and n - i < _EMAIL_MAX and _is_email_char(text[i - 1]):
            i -= 1
        return min(n - self.reach, i)


@CHECKS.register("pii")
def build_pii(policy: GuardPolicy, base_dir: Path) -> PiiDetector:
    """The data stage's PII detectors with the policy's allow list."""
    return PiiDetector(policy.pii_allow)
