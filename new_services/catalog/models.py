"""The catalog's JSON shapes, and the hand-written check of a new book.

``parse_new_book`` checks the body in the legacy app's order and with its messages, instead of a
Pydantic request model, because the route's contract is what the legacy app answers: 400 and
"title must be a non-empty string", not 422 and Pydantic's wording.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException
from pydantic import BaseModel

#: Four digits either way of year zero, as in the legacy app.
MAX_ABS_YEAR = 9999


class Book(BaseModel):
    id: int
    title: str
    author: str
    year: int


class BookList(BaseModel):
    books: list[Book]


@dataclass(frozen=True, slots=True)
class NewBook:
    title: str
    author: str
    year: int


def parse_new_book(payload: object) -> NewBook:
    """The book described by a decoded JSON body; raises 400 with the first problem."""
    if not isinstance(payload, dict):
        raise HTTPException(400, "request body must be a JSON object")
    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        raise HTTPException(400, "title must be a non-empty string")
    author = payload.get("author")
    if not isinstance(author, str) or not author.strip():
        raise HTTPException(400, "author must be a non-empty string")
    year = payload.get("year")
    # bool is an int subclass in Python; JSON true is not a year.
    if isinstance(year, bool) or not isinstance(year, int) or abs(year) > MAX_ABS_YEAR:
        raise HTTPException(
            400, f"year must be an integer between -{MAX_ABS_YEAR} and {MAX_ABS_YEAR}"
        )
    return NewBook(title=title.strip(), author=author.strip(), year=year)
