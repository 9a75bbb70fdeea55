"""What handlers get: the shared services and the current update's unit of work."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegram.ext import CallbackContext, ExtBot

from bot.processor import UpdateScope, current_scope
from bot.rendering import Renderer

if TYPE_CHECKING:
    from bot.delivery.service import Delivery
from bot.settings import Settings
from domain.residents import ResidentInfo
from domain.staff import can_manage_roles, can_moderate
from storage.uow import Database, UnitOfWork


@dataclass
class Services:
    settings: Settings
    database: Database
    renderer: Renderer
    delivery: Delivery | None = None

    def today(self) -> dt.date:
        return dt.datetime.now(self.settings.tz).date()


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """CallbackContext with typed access to our services and the update scope."""

    @property
    def services(self) -> Services:
        services: Services = self.application.bot_data["services"]
        return services

    @property
    def scope(self) -> UpdateScope:
        scope = current_scope.get()
        if scope is None:
            raise RuntimeError("no update scope: handler called outside the update processor")
        return scope

    @property
    def uow(self) -> UnitOfWork:
        return self.scope.uow

    @property
    def resident(self) -> ResidentInfo:
        resident = self.scope.resident
        if resident is None:
            raise RuntimeError("no resident for this update")
        return resident

    @resident.setter
    def resident(self, value: ResidentInfo) -> None:
        self.scope.resident = value

    @property
    def role(self) -> str | None:
        """The staff role of whoever sent this update ("admin", "moderator" or None)."""
        scope = current_scope.get()
        if scope is None:
            return None
        return scope.resident.role if scope.resident is not None else scope.role

    @property
    def is_moderator(self) -> bool:
        """Checked on the server for every moderator command and button."""
        return can_moderate(self.role)

    @property
    def is_admin(self) -> bool:
        """Admins may also manage roles."""
        return can_manage_roles(self.role)

    @property
    def lang(self) -> str:
        resident = self.scope.resident if current_scope.get() else None
        return resident.language if resident else "de"

    @property
    def renderer(self) -> Renderer:
        return self.services.renderer
