"""Reading a cohort's CSV: header spellings, delimiters, byte-order marks, line numbers, limits."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from portal.admin.cohort_csv import check_csv
from tests.portal.test_cohorts import make_cohort


@pytest.mark.parametrize(
    "text",
    [
        "email,first_name,last_name\r\nann@example.com,Ann,Lee\r\n",
        "Email Address,Given Name,Surname,Phone\nann@example.com,Ann,Lee,555\n",
        "\ufeffLast Name;First Name;E-mail\nLee;Ann;ANN@Example.com\n",
        '"email","first name","last name"\n"ann@example.com"," Ann ","Lee"\n',
        "\n\nEMAIL;FIRSTNAME;LASTNAME\nann@example.com;Ann;Lee",
    ],
)
def test_common_header_spellings_delimiters_and_a_byte_order_mark(
    session: Session, text: str
) -> None:
    cohort = make_cohort(session)
    check = check_csv(session, text, cohort.id)
    assert check.ok, (check.problems, [r.problems for r in check.rows])
    assert [(r.email, r.first_name, r.last_name) for r in check.rows] == [
        ("ann@example.com", "Ann", "Lee")
    ]


def test_line_numbers_count_physical_lines_through_quoted_newlines(session: Session) -> None:
    text = 'email,first name,last name\nann@example.com,"Ann\nMarie",Lee\nbad,Bo,Ray\n'
    check = check_csv(session, text, make_cohort(session).id)
    assert [(r.line, r.problems) for r in check.rows] == [
        (2, ["control characters in the first name"]),
        (4, ["not a valid email address"]),
    ]


@pytest.mark.parametrize(
    "text,problem",
    [
        ("", "The file is empty."),
        ("email,first name,last name\n", "The file has a header line but no students."),
        (
            "email,first name\nann@example.com,Ann\n",
            "Line 1 must name the columns email, first name and last name; missing: last name "
            "(found: email, first name).",
        ),
        ("mail,email,first,last\n", "Line 1: two email columns."),
    ],
)
def test_a_file_without_students_or_columns_is_refused_as_a_whole(
    session: Session, text: str, problem: str
) -> None:
    check = check_csv(session, text, make_cohort(session).id)
    assert check.problems == [problem] and not check.ok


def test_more_than_500_students_are_refused_line_by_line(session: Session) -> None:
    cohort = make_cohort(session)
    rows = "".join(f"s{i}@example.com,S,{i}\n" for i in range(502))
    check = check_csv(session, "email,first name,last name\n" + rows, cohort.id)
    assert [(r.line, r.problems) for r in check.bad_rows] == [
        (502, ["over the limit of 500 students per import"]),
        (503, ["over the limit of 500 students per import"]),
    ]
    huge = "".join(f"s{i}@example.com,S,{i}\n" for i in range(5000))
    check = check_csv(session, "email,first name,last name\n" + huge, cohort.id)
    assert len(check.rows) == 1000
    assert check.problems == [
        "The file goes on after line 1001: at most 500 students are imported at once."
    ]
