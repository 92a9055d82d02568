"""Feedback on served requests: a rating of any scale (normalised to 0–1), a correction, a
comment. Feedback is kept after the request log is purged: it is the next version's data."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, get_args

from pydantic import BaseModel, Field
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from luodi.data.ops.pii import mask_pii
from luodi.data.ratings import RatingScale, is_missing, normalise
from luodi.errors import BadInputError, NotFoundError
from luodi.serve.auth.keys import Principal, utc
from luodi.store import Store
from luodi.store.models import FeedbackRow, RequestLogRow, UsageRow

if TYPE_CHECKING:
    from luodi.serve.usage.recorder import UsageRecorder

MAX_TEXT = 20_000
SCALES = get_args(RatingScale)


class FeedbackInfo(BaseModel):
    """One stored feedback, with what the request asked and got while its log is kept."""

    id: int = Field(description="Feedback id.")
    request_id: str = Field(description="The request it is about.")
    at: datetime = Field(description="When it was given (UTC).")
    key_id: str = Field(description="The key that gave it.")
    team: str = Field(description="The team of the request.")
    rating_raw: str | None = Field(description="The rating as sent (e.g. '4', '👍', '4/5').")
    scale: str | None = Field(description="The scale it was read on (auto, 1-5, thumbs, ...).")
    rating: float | None = Field(description="The rating on 0–1, 1 = best; None if none given.")
    correction: str | None = Field(description="A better answer, PII-masked.")
    comment: str | None = Field(description="A free comment, PII-masked.")
    model_version: str | None = Field(default=None, description="Version that answered.")
    prompt: str | None = Field(default=None, description="The masked prompt (None once purged).")
    response: str | None = Field(default=None, description="The masked reply (None once purged).")


def normalise_rating(value: object, scale: str = "auto") -> float | None:
    """`value` on 0–1 (None when absent); BadInputError naming the accepted forms.

    With scale "auto" a lone number is read on the smallest scale holding it: 0 and 1 as
    thumbs down/up (0-1), 2–5 as stars (1-5), up to 10 as 1-10, up to 100 as 0-100. Send the
    scale for 1-star ratings of a 5-star scale ("1-5"), which would otherwise read as 1.0.
    """
    if scale not in SCALES:
        raise BadInputError(f"unknown rating scale {scale!r}: use one of {', '.join(SCALES)}")
    if is_missing(value):
        return None
    if not isinstance(value, str | int | float | bool):
        raise BadInputError(f"a rating must be a number or a string, not {type(value).__name__}")
    [rating] = normalise([value], scale)  # type: ignore[arg-type]
    if rating is None:
        raise BadInputError(
            f"cannot read rating {value!r} on scale {scale!r}: send a number on the scale, "
            "'up'/'down', 👍/👎, stars like '★★★★☆' or a fraction like '4/5'"
        )
    return rating


def _request_team(s: Session, request_id: str) -> str | None:
    team = s.execute(
        select(RequestLogRow.team).where(RequestLogRow.request_id == request_id)
    ).scalar()
    if team is None:  # the log may have been purged; the usage row is kept
        team = s.execute(
            select(UsageRow.team).where(UsageRow.request_id == request_id).limit(1)
        ).scalar()
    return team


def _clean_text(text: str | None, what: str, allow: Iterable[str]) -> str | None:
    if text is None or not text.strip():
        return None
    if len(text) > MAX_TEXT:
        raise BadInputError(f"the {what} has {len(text)} characters; the limit is {MAX_TEXT}")
    return mask_pii(text, allow)[0]


def add_feedback(
    store: Store,
    request_id: str,
    rating: object = None,
    correction: str | None = None,
    comment: str | None = None,
    key: Principal | None = None,
    scale: str = "auto",
    recorder: UsageRecorder | None = None,
    mask_allow: Iterable[str] = (),
) -> FeedbackInfo:
    """Store feedback on `request_id`, given with `key`; returns it with the rating on 0–1.

    NotFoundError (404) when no request has that id, or when `key` (not an admin) belongs to
    another team than the request (the same answer, so ids of other teams are not revealed).
    BadInputError when there is nothing to store or the rating cannot be read. The correction
    and comment are PII-masked like the request log. With `recorder`, a request still queued
    in it is written first, so feedback right after the reply finds its request.
    """
    value = normalise_rating(rating, scale)
    allow = tuple(mask_allow)
    correction = _clean_text(correction, "correction", allow)
    comment = _clean_text(comment, "comment", allow)
    if value is None and correction is None and comment is None:
        raise BadInputError("feedback needs a rating, a correction or a comment")
    with Session(store.engine) as s:
        team = _request_team(s, request_id)
    if team is None and recorder is not None:
        recorder.flush()
        with Session(store.engine) as s:
            team = _request_team(s, request_id)
    if team is None or (key is not None and key.role != "admin" and key.team != team):
        raise NotFoundError(f"no request with id {request_id!r} (or it is not your team's)")
    row = {
        "request_id": request_id,
        "at": datetime.now(UTC),
        "key_id": key.key_id if key is not None else "-",
        "team": team,
        "rating_raw": None if is_missing(rating) else str(rating)[:64],
        "scale": None if value is None else scale,
        "rating": value,
        "correction": correction,
        "comment": comment,
    }
    with store.engine.begin() as conn:
        fid = conn.execute(insert(FeedbackRow).values(**row).returning(FeedbackRow.id)).scalar_one()
    return FeedbackInfo(id=fid, **row)


def list_feedback(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    team: str | None = None,
) -> list[FeedbackInfo]:
    """Feedback given in [since, until) (of `team` when given), oldest first, each with the
    masked prompt, reply and model version while the request's log is kept."""
    q = (
        select(
            FeedbackRow,
            RequestLogRow.model_version,
            RequestLogRow.prompt_masked,
            RequestLogRow.response_masked,
        )
        .outerjoin(RequestLogRow, RequestLogRow.request_id == FeedbackRow.request_id)
        .order_by(FeedbackRow.at, FeedbackRow.id)
    )
    if since is not None:
        q = q.where(FeedbackRow.at >= since)
    if until is not None:
        q = q.where(FeedbackRow.at < until)
    if team is not None:
        q = q.where(FeedbackRow.team == team)
    with Session(store.engine) as s:
        return [
            FeedbackInfo(
                id=f.id,
                request_id=f.request_id,
                at=utc(f.at),
                key_id=f.key_id,
                team=f.team,
                rating_raw=f.rating_raw,
                scale=f.scale,
                rating=f.rating,
                correction=f.correction,
                comment=f.comment,
                model_version=mv,
                prompt=prompt,
                response=response,
            )
            for f, mv, prompt, response in s.execute(q).all()
        ]
