"""Telegram-facing code, one module per feature. Each parses updates, calls the domain
layer, renders a template and replies."""

from __future__ import annotations

from telegram.ext import Application

from handlers import (
    broadcast,
    comments,
    errors,
    gate,
    goal_admin,
    goals,
    items,
    moderation,
    my_items,
    privacy,
    proposals,
    search,
    sessions,
    settings,
    staff_tools,
    start,
    status,
    text_input,
)

#: Order matters within group 0: specific routes first, the catch-alls last.
FEATURES = (
    gate,
    start,
    privacy,
    sessions,
    items,
    search,
    comments,
    my_items,
    settings,
    moderation,
    proposals,
    status,
    broadcast,
    staff_tools,
    goals,
    goal_admin,
    text_input,
    errors,
)


def register_all(app: Application) -> None:  # type: ignore[type-arg]
    for feature in FEATURES:
        feature.register(app)
