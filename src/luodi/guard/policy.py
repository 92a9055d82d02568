"""Guard policies: rules over the checks for a service's input and output, loaded from YAML.

```yaml
# luodi guard check --policy policy.yaml "text to check"
refusal: "抱歉，这个请求我无法协助。 / Sorry, I can't help with that request."
lexicons:                 # the enterprise's own files, {category: path or [paths]}
  competitors: lexicons/competitors.txt
pii_allow: ["400-820-8820"]
input:
  - check: injection
    action: block
  - check: lexicon
    categories: [violence, illegal]
    action: block
output:
  - check: pii
    action: mask
```

A verdict's action is the strongest over the rules that matched (block > mask > warn >
allow); `mask` replaces the spans of the mask rules with [CATEGORY] placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

# the checks register themselves in CHECKS on import
from luodi.errors import BadInputError
from luodi.guard import injection as _injection
from luodi.guard import lexicon as _lexicon
from luodi.guard import pii as _pii
from luodi.guard.base import CHECKS, Detector, Hit
from luodi.guard.normalize import Normalized, normalize
from luodi.guard.stream import StreamGuard
from luodi.guard.verdict import Action, Match, Verdict, apply_masks, make_verdict

POLICY_DIR = Path(__file__).parent / "policies"
DEFAULT_REFUSAL = "抱歉，这个请求我无法协助。 / Sorry, I can't help with that request."
Direction = Literal["input", "output"]

_ = (_injection, _lexicon, _pii)


class Rule(BaseModel):
    """One rule: run a check, keep the hits in some categories, act on them."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        default=None, description="Name in logs and metrics; default '<direction>.<n>.<check>'."
    )
    check: str = Field(description="The check to run: lexicon, pii or injection.")
    categories: list[str] | None = Field(
        default=None,
        description="Only these categories of the check, e.g. [violence, illegal] for "
        "lexicon, [phone, id] for pii, [jailbreak] for injection; default all of them.",
    )
    action: Action = Field(description="block (refuse), mask ([CATEGORY]) or warn (log only).")


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its id and the full category names it accepts (None: all)."""

    id: str
    check: str
    categories: frozenset[str] | None
    action: Action


class Engine:
    """A policy's built detectors and rules: what check_input/check_output/streams run."""

    def __init__(self, detectors: dict[str, Detector], rules: dict[str, list[CompiledRule]]):
        self.detectors = detectors
        self.rules = rules
        self._checks = {d: sorted({r.check for r in rs}) for d, rs in rules.items()}

    def scan(self, direction: str, text: str, pos: int = 0) -> dict[str, list[Hit]]:
        """Hits of every check the direction's rules use, on normalised `text` from `pos`."""
        return {c: self.detectors[c].find(text, pos) for c in self._checks[direction]}

    def matches(
        self, direction: str, hits: dict[str, list[Hit]], to_orig: Normalized
    ) -> list[Match]:
        """The rules' matches among `hits` (shields skipped), with spans in the original
        text."""
        out: list[Match] = []
        for rule in self.rules[direction]:
            for h in hits.get(rule.check, ()):
                if h.category and (rule.categories is None or h.category in rule.categories):
                    s, e = to_orig.orig_span(h.start, h.end)
                    out.append(Match(rule.id, rule.action, h.category, s, e, h.term))
        return out

    def check(self, direction: str, text: str) -> Verdict:
        """The verdict on a whole text."""
        if not self.rules[direction]:
            return make_verdict([], text)
        norm = normalize(text)
        matches = self.matches(direction, self.scan(direction, norm.text), norm)
        verdict = make_verdict(matches, text)
        if verdict.action == "mask":
            verdict.text = apply_masks(
                text, [(m.start, m.end, m.category) for m in matches if m.action == "mask"]
            )
        return verdict


class GuardPolicy(BaseModel):
    """What a deployment checks on its input and output, and what it does about it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="custom", description="Shown by `luodi guard show` and in logs.")
    description: str = Field(default="", description="What this policy is for.")
    refusal: str = Field(
        default=DEFAULT_REFUSAL, description="The reply when the input or the output is blocked."
    )
    label_text: str | None = Field(
        default=None,
        description="Text the gateway appends to answers under this policy, e.g. an "
        "AI-generated content label; None leaves it to the server's setting.",
    )
    builtin_lexicons: bool | list[str] = Field(
        default=True,
        description="Built-in lexicon categories to load: true (all), false (none) or a list "
        "(violence, illegal, sexual, political, privacy, abuse).",
    )
    lexicons: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="The enterprise's own lexicon files, {category: path or [paths]}; relative "
        "paths are relative to the policy file. Added to a built-in category of the same name.",
    )
    pii_allow: list[str] = Field(
        default_factory=list,
        description="Strings never treated as PII, e.g. the company's public hotline "
        "'400-820-8820' (numbers compared without spaces/dashes).",
    )
    input: list[Rule] = Field(default_factory=list, description="Rules on the request text.")
    output: list[Rule] = Field(default_factory=list, description="Rules on the reply text.")

    _engine: Engine | None = PrivateAttr(default=None)
    _source: str = PrivateAttr(default="inline")

    def compile(self, base_dir: Path | None = None) -> GuardPolicy:
        """Build the detectors and rules now (lexicon files are read here; relative paths
        against `base_dir`, default the working directory). Bad rules, unknown checks or
        categories and unreadable files are BadInputErrors naming what is wrong."""
        base = base_dir or Path.cwd()
        detectors: dict[str, Detector] = {}
        rules: dict[str, list[CompiledRule]] = {}
        ids: set[str] = set()
        for direction in ("input", "output"):
            rules[direction] = []
            for i, rule in enumerate(getattr(self, direction)):
                where = f"{direction} rule {i + 1}"
                factory = _get_check(rule.check, where)
                if rule.check not in detectors:
                    detectors[rule.check] = factory(self, base)
                det = detectors[rule.check]
                rid = rule.id or f"{direction}.{i + 1}.{rule.check}"
                if rid in ids:
                    raise BadInputError(f"guard policy: {where}: duplicate rule id {rid!r}")
                ids.add(rid)
                cats = None
                if rule.categories == []:
                    raise BadInputError(
                        f"guard policy: {where}: empty categories would match nothing; "
                        "leave `categories` out to match all of them"
                    )
                if rule.categories is not None:
                    cats = frozenset(
                        _full_category(rule.check, c, det, where) for c in rule.categories
                    )
                rules[direction].append(CompiledRule(rid, rule.check, cats, rule.action))
        lexicon_settings = self.lexicons or not isinstance(self.builtin_lexicons, bool)
        if lexicon_settings and "lexicon" not in detectors:
            # files and names are still checked at load time, even with no lexicon rule yet
            CHECKS.get("lexicon")(self, base)
        self._engine = Engine(detectors, rules)
        normalize("预热")  # builds the normalisation table now, not on a request (~50 ms once)
        return self

    @property
    def engine(self) -> Engine:
        """The compiled engine (compiled on first use against the working directory)."""
        if self._engine is None:
            self.compile()
        assert self._engine is not None
        return self._engine

    def check_input(self, text: str) -> Verdict:
        """The verdict on a request text under the input rules."""
        return self.engine.check("input", text)

    def check_output(self, text: str) -> Verdict:
        """The verdict on a whole reply under the output rules."""
        return self.engine.check("output", text)

    def output_stream(self) -> StreamGuard:
        """A guard for one streamed reply under the output rules (see StreamGuard)."""
        return StreamGuard(self.engine, "output")

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for `luodi guard show`: rules, lexicon sizes and sources,
        pattern counts, refusal and label."""
        eng = self.engine
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "source": self._source,
            "refusal": self.refusal,
            "label_text": self.label_text,
        }
        for direction in ("input", "output"):
            out[direction] = [
                {
                    "id": r.id,
                    "check": r.check,
                    "categories": sorted(r.categories) if r.categories else "all",
                    "action": r.action,
                }
                for r in eng.rules[direction]
            ]
        lex = eng.detectors.get("lexicon")
        if isinstance(lex, _lexicon.Lexicon):
            out["lexicons"] = {
                c: {"terms": lex.counts[c], "sources": lex.sources.get(c, [])}
                for c in sorted(lex.counts)
            }
            out["lexicon_exceptions"] = lex.exceptions
        inj = eng.detectors.get("injection")
        if isinstance(inj, _injection.InjectionDetector):
            out["injection_patterns"] = {
                c: sum(p.category == c for p in inj.patterns) for c in _injection.CATEGORIES
            }
        if "pii" in eng.detectors:
            out["pii_allow"] = len(self.pii_allow)
        return out


def _get_check(name: str, where: str) -> Any:
    try:
        return CHECKS.get(name)
    except BadInputError as exc:
        raise BadInputError(f"guard policy: {where}: {exc.message}") from None


def _full_category(check: str, name: str, det: Detector, where: str) -> str:
    known = det.categories()
    for cand in (name, f"{check}.{name}"):
        if cand in known:
            return cand
    short = ", ".join(k.split(".", 1)[-1] for k in known) or "none"
    raise BadInputError(f"guard policy: {where}: unknown {check} category {name!r}; known: {short}")


def load_policy(path_or_name: str | Path | None) -> GuardPolicy:
    """A compiled policy: None or "default" -> the built-in default policy, another name of a
    built-in policy, or the path of a policy YAML file. Missing or unreadable files, YAML
    errors, unknown keys, bad actions and missing lexicon files are BadInputErrors."""
    name = "default" if path_or_name is None else str(path_or_name)
    builtin = POLICY_DIR / f"{name}.yaml"
    path = builtin if "/" not in name and builtin.is_file() else Path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in POLICY_DIR.glob("*.yaml")))
        raise BadInputError(
            f"guard policy {name!r} not found: give a built-in policy ({known}) or the path "
            "of a policy YAML file"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read guard policy {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise BadInputError(f"guard policy {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"guard policy {path} must be a YAML mapping of settings")
    try:
        policy = GuardPolicy.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadInputError(f"guard policy {path}: {errs}") from None
    try:
        policy.compile(path.parent)
    except BadInputError as exc:
        raise BadInputError(f"{exc.message} (in {path})") from None
    policy._source = "builtin:" + name if path == builtin else str(path)
    return policy


def check_text(policy: GuardPolicy, text: str, direction: str = "input") -> Verdict:
    """The verdict of `policy` on `text` for `direction` ("input" or "output"): what
    `luodi guard check` prints."""
    if direction not in ("input", "output"):
        raise BadInputError(f"direction must be 'input' or 'output', not {direction!r}")
    return policy.engine.check(direction, text)
