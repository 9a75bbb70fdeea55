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
from storage.uow import Database, UnitOfWork


@dataclass
class Services:
    settings: Settings
    database: Database
    renderer: Renderer
    delivery: Delivery | None = None

    def is_admin(self, telegram_id: int | None) -> bool:
        """Checked on the server for every admin command and button."""
        return telegram_id is not None and telegram_id in self.settings.admin_ids

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
    def lang(self) -> str:
        resident = self.scope.resident if current_scope.get() else None
        return resident.language if resident else "de"

    @property
    def renderer(self) -> Renderer:
        return self.services.renderer
