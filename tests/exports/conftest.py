"""Shared fixtures of the export tests: staff with chosen permissions, and
reading an export's answer back (CSV rows, or an XLSX through openpyxl)."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client


@pytest.fixture
def staff_client(db):
    """A signed-in staff client with exactly the permissions named (``app.codename``)."""

    def make(*permissions: str, username: str = "clerk") -> Client:
        user = User.objects.create_user(username, password="pw", is_staff=True)
        for name in permissions:
            app_label, codename = name.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return make


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def csv_rows(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads UTF-8 (Chinese names) only with the mark
    return list(csv.reader(io.StringIO(text[1:])))


def xlsx_rows(data: bytes) -> list[tuple]:
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    return list(sheet.iter_rows(values_only=True))
