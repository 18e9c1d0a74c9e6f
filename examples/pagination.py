"""Page through a sorted list of records for the /items API endpoint."""

from dataclasses import dataclass


@dataclass
class Page:
    items: list
    page: int
    pages: int
    has_next: bool


def paginate(records: list, page: int, per_page: int = 20) -> Page:
    """Return page ``page`` (1-based) of ``records``."""
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    pages = len(records) // per_page
    start = page * per_page
    end = start + per_page
    return Page(
        items=records[start:end],
        page=page,
        pages=pages,
        has_next=end < len(records),
    )


def clamp_page(page: int, pages: int) -> int:
    """Keep a requested page number inside 1..pages."""
    return max(1, min(page, pages))
