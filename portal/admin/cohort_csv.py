"""Read a cohort's student list from CSV and find every problem in it before anything is written.

The file has a header line naming an email, a first-name and a last-name column (common
spellings, any case, extra columns ignored), UTF-8 with or without a byte-order mark, commas or
semicolons (whichever the header line uses). Each student row keeps the line it starts on, so
the preview can point at the lines to fix.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crud import normalize_email
from core.models import Cohort
from core.models import Role
from core.models import User

if TYPE_CHECKING:
    from _csv import Reader

MAX_ROWS = 500
# users.name (200 characters) holds "first last".
MAX_NAME = 99
# Reading stops this far past the limit: a huge file is refused without listing all of it.
READ_AT_MOST = 2 * MAX_ROWS
# The header spellings accepted per column, as folded by _column_key.
COLUMNS = {
    "email": {"email", "emailaddress", "emailadress", "mail", "mailaddress", "courriel"},
    "first_name": {"firstname", "first", "givenname", "forename", "fname", "prenom", "vorname"},
    "last_name": {"lastname", "last", "surname", "familyname", "lname", "nom", "nachname"},
}
LABELS = {"email": "email", "first_name": "first name", "last_name": "last name"}
EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CsvError(ValueError):
    """The upload cannot be read as text at all."""


@dataclass
class StudentRow:
    """One student line of the file and what is wrong with it."""

    line: int
    email: str
    first_name: str
    last_name: str
    problems: list[str] = field(default_factory=list)
    # Why a correct row imports nothing (the student is in this cohort already).
    skip: str | None = None

    @property
    def name(self) -> str:
        """The account's display name."""
        return f"{self.first_name} {self.last_name}"


@dataclass
class CsvCheck:
    """Every student row of a file, and the problems of the file as a whole."""

    rows: list[StudentRow]
    problems: list[str]

    @property
    def bad_rows(self) -> list[StudentRow]:
        """The rows that stop the import."""
        return [row for row in self.rows if row.problems]

    @property
    def ok(self) -> bool:
        """Whether the file can be imported as it is."""
        return not self.problems and not self.bad_rows

    @property
    def to_import(self) -> list[StudentRow]:
        """The rows that become new students."""
        return [row for row in self.rows if row.skip is None]


def decode_upload(data: bytes) -> str:
    """The text of an uploaded file: UTF-8, a leading byte-order mark dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(
            f"The file is not UTF-8 text (byte {exc.start + 1}); save it as CSV UTF-8."
        ) from None


def check_csv(db: Session, text: str, cohort_id: int) -> CsvCheck:
    """Parse ``text`` and list every problem, checking addresses against existing accounts."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        return CsvCheck([], ["The file is empty."])
    first_line = text.lstrip("\r\n").splitlines()[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    check = CsvCheck([], [])
    columns = None
    try:
        columns = _header(reader, check.problems)
        if columns is not None:
            _read_rows(reader, columns, check)
    except csv.Error as exc:
        check.problems.append(f"Line {reader.line_num} cannot be read: {exc}.")
    if columns is not None and not check.rows and not check.problems:
        check.problems.append("The file has a header line but no students.")
    _check_accounts(db, check.rows, cohort_id)
    return check


def _column_key(cell: str) -> str:
    # "E-Mail", "First name", "first_name" and "Prénom" fold to "email", "firstname", "prenom".
    folded = unicodedata.normalize("NFKD", cell).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", folded)


def _header(reader: Reader, problems: list[str]) -> dict[str, int] | None:
    cells = next((row for row in reader if any(c.strip() for c in row)), [])
    columns: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _column_key(cell)
        for column, spellings in COLUMNS.items():
            if key in spellings:
                if column in columns:
                    problems.append(f"Line {reader.line_num}: two {LABELS[column]} columns.")
                columns[column] = index
    missing = [LABELS[c] for c in COLUMNS if c not in columns]
    if missing:
        found = ", ".join(c.strip() for c in cells if c.strip()) or "nothing"
        problems.append(
            f"Line {reader.line_num} must name the columns email, first name and last name; "
            f"missing: {', '.join(missing)} (found: {found})."
        )
    return None if problems else columns


def _read_rows(reader: Reader, columns: dict[str, int], check: CsvCheck) -> None:
    seen: dict[str, int] = {}
    last_line = reader.line_num
    for cells in reader:
        line, last_line = last_line + 1, reader.line_num  # a quoted field may span lines
        if not any(c.strip() for c in cells):
            continue
        if len(check.rows) >= READ_AT_MOST:
            check.problems.append(
                f"The file goes on after line {line - 1}: at most {MAX_ROWS} students "
                "are imported at once."
            )
            return
        value = {c: cells[i].strip() if i < len(cells) else "" for c, i in columns.items()}
        row = StudentRow(
            line, normalize_email(value["email"]), value["first_name"], value["last_name"]
        )
        row.problems = _row_problems(row)
        if len(check.rows) >= MAX_ROWS:
            row.problems.append(f"over the limit of {MAX_ROWS} students per import")
        if row.email in seen:
            row.problems.append(f"duplicate of line {seen[row.email]}")
        elif row.email:
            seen[row.email] = line
        check.rows.append(row)


def _row_problems(row: StudentRow) -> list[str]:
    problems = []
    if not row.email:
        problems.append("missing email")
    elif len(row.email) > 254 or not EMAIL.match(row.email):
        problems.append("not a valid email address")
    for label, value in (("first name", row.first_name), ("last name", row.last_name)):
        if not value:
            problems.append(f"missing {label}")
        elif len(value) > MAX_NAME:
            problems.append(f"{label} longer than {MAX_NAME} characters")
        elif CONTROL.search(value):
            problems.append(f"control characters in the {label}")
    return problems


def _check_accounts(db: Session, rows: list[StudentRow], cohort_id: int) -> None:
    emails = {row.email for row in rows if row.email and not row.problems}
    if not emails:
        return
    found = {
        email: (role, cohort, name)
        for email, role, cohort, name in db.execute(
            select(User.email, User.role, User.cohort_id, Cohort.name)
            .outerjoin(Cohort, Cohort.id == User.cohort_id)
            .where(User.email.in_(emails))
        )
    }
    for row in rows:
        if row.email not in found or row.problems:
            continue
        role, cohort, name = found[row.email]
        if role != Role.STUDENT.value:
            row.problems.append("already an admin account")
        elif cohort == cohort_id:
            row.skip = "already in this cohort"
        elif cohort is not None:
            row.problems.append(f"already a student of the cohort {name}")
        else:
            row.problems.append("already has a student account outside any cohort")
