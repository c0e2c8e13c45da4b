"""The rule for rating a request, shared by POST /v1/router/feedback and the dashboard's
feedback form: a rating from 1 (bad) to 5 (good) and an optional comment, for a request made
with the caller's key (an admin may rate any); the latest rating of a request stands."""
from __future__ import annotations

import time

from costr.accounts.records import ApiKey, Feedback, LedgerRecord, Store
from costr.errors import InvalidRequest, NotFound

MAX_COMMENT = 4000


def check_rating(rating, comment) -> None:
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise InvalidRequest("'rating' must be an integer from 1 (bad) to 5 (good).", param="rating")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise InvalidRequest(f"'comment' must be a string of at most {MAX_COMMENT} characters.",
                             param="comment")


async def rate_request(store: Store, key: ApiKey, request_id, rating, comment="") -> LedgerRecord:
    """Store `key`'s rating of a request (flush the ledger first, so a request just answered
    can be rated); InvalidRequest or NotFound (never "forbidden": another key's request ids
    are not disclosed) otherwise. Returns the rated request's record."""
    if not isinstance(request_id, str) or not request_id:
        raise InvalidRequest("Missing required parameter: 'request_id'.", param="request_id")
    check_rating(rating, comment)
    record = await store.ledger_record(request_id)
    if record is None or (record.key_id != key.id and not key.admin):
        raise NotFound(f"No request {request_id!r} made with this key.", param="request_id",
                       code="request_not_found")
    await store.add_feedback(Feedback(request_id, record.key_id, rating, comment, time.time()))
    return record
