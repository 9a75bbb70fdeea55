"""to:DO items: menu by action field, sorted lists, the item card, support and follow."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from telegram import Update
from telegram.ext import Application

from bot import callbacks as cb
from bot.context import BotContext
from domain import items as item_service
from domain.views import ItemCard, ItemSummary
from handlers.common import (
    Keyboard,
    answer,
    button,
    label,
    on_callback,
    pager,
    render,
    show,
    show_notice,
    url_button,
)


def item_buttons(context: BotContext, entries: list[ItemSummary], origin: str) -> Keyboard:
    return [
        [
            button(
                label(context, "item_list_button", i.key, i.title, i.supporters),
                cb.ITEM.build(iid=i.id, origin=origin),
            )
        ]
        for i in entries
    ]


async def show_items_menu(update: Update, context: BotContext) -> None:
    fields = await item_service.action_fields(context.uow, context.lang)
    total = sum(f.items for f in fields)
    keyboard: Keyboard = [
        [button(label(context, "all_items", total), cb.ITEMS.build(fid=0, sort="s", page=0))]
    ]
    keyboard += [
        [
            button(
                label(context, "field_button", f.title, f.items),
                cb.ITEMS.build(fid=f.id, sort="s", page=0),
            )
        ]
        for f in fields
    ]
    keyboard.append([button(label(context, "propose"), cb.PROPOSE.build())])
    keyboard.append(
        [
            button(label(context, "search"), cb.SEARCH_PROMPT.build()),
            button(label(context, "main_menu"), cb.MENU.build()),
        ]
    )
    await show(update, context, render(context, "items_menu", fields=fields, total=total), keyboard)


async def show_items(
    update: Update, context: BotContext, field_id: int, sort: str, page: int
) -> None:
    field = None
    if field_id:
        field = await item_service.action_field(context.uow, field_id, context.lang)
        if field is None:
            await answer(update, context, label(context, "stale_button"))
            await show_items_menu(update, context)
            return
    sort_name = cb.SORT_CODES[sort]
    result = await item_service.list_items(
        context.uow,
        context.lang,
        field_id or None,
        sort_name,
        page,  # type: ignore[arg-type]
    )
    origin = cb.item_list_origin(field_id, sort_name, result.page)
    keyboard = [
        [
            button(
                label(context, "sort_" + name, letter == sort),
                cb.ITEMS.build(fid=field_id, sort=letter, page=0),
            )
            for letter, name in cb.SORT_CODES.items()
        ]
    ]
    keyboard += item_buttons(context, result.entries, origin)
    nav = pager(context, result, lambda p: cb.ITEMS.build(fid=field_id, sort=sort, page=p))
    if nav:
        keyboard.append(nav)
    keyboard.append(
        [
            button(label(context, "back"), cb.ITEMS_MENU.build()),
            button(label(context, "main_menu"), cb.MENU.build()),
        ]
    )
    await show(
        update,
        context,
        render(context, "items_list", page=result, field=field, sort=sort_name),
        keyboard,
    )


def share_url(bot_username: str, card: ItemCard, share_text: str) -> str:
    link = f"https://t.me/{bot_username}?start=item_{card.key}"
    return f"https://t.me/share/url?url={quote(link, safe='')}&text={quote(share_text, safe='')}"


def card_keyboard(context: BotContext, card: ItemCard, origin: str) -> Keyboard:
    iid = card.id
    support = (
        button(label(context, "withdraw_support"), cb.SUPPORT.build(iid=iid, on=0, origin=origin))
        if card.supporting
        else button(label(context, "support"), cb.SUPPORT.build(iid=iid, on=1, origin=origin))
    )
    follow = (
        button(label(context, "unfollow"), cb.FOLLOW.build(iid=iid, on=0, origin=origin))
        if card.following
        else button(label(context, "follow"), cb.FOLLOW.build(iid=iid, on=1, origin=origin))
    )
    share_text = label(context, "share_text", card.key, card.title)
    if card.merged_into is not None:
        target = card.merged_into
        return [
            [
                button(
                    label(context, "item_button", target.key, target.title),
                    cb.ITEM.build(iid=target.id, origin=origin),
                )
            ],
            [
                button(
                    label(context, "comments", card.comments),
                    cb.COMMENTS.build(iid=iid, page=0, origin=origin),
                )
            ],
            [
                button(label(context, "back"), cb.back_data(origin)),
                button(label(context, "main_menu"), cb.MENU.build()),
            ],
        ]
    goals: Keyboard = [
        [
            button(
                label(context, "goal_button", g.key, g.title),
                cb.GOAL.build(gid=g.id, via=f"I{iid}"),
            )
        ]
        for g in card.goals
    ]
    return [
        [support],
        *goals,
        [
            button(label(context, "comment"), cb.COMMENT.build(iid=iid, origin=origin)),
            button(
                label(context, "comments", card.comments),
                cb.COMMENTS.build(iid=iid, page=0, origin=origin),
            ),
        ],
        [
            follow,
            url_button(label(context, "share"), share_url(context.bot.username, card, share_text)),
        ],
        [
            button(label(context, "back"), cb.back_data(origin)),
            button(label(context, "main_menu"), cb.MENU.build()),
        ],
    ]


async def show_item(
    update: Update, context: BotContext, item_id: int, origin: str, *, new: bool = False
) -> bool:
    card = await item_service.item_card(context.uow, context.resident.id, item_id, context.lang)
    if card is None:
        await show_notice(update, context, "item_not_found", new=new)
        return False
    await show(
        update,
        context,
        render(context, "item_card", item=card),
        card_keyboard(context, card, origin),
        new=new,
    )
    return True


async def items_menu_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_items_menu(update, context)


async def items_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_items(update, context, args.number("fid"), args.text("sort"), args.number("page"))


async def item_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_item(update, context, args.number("iid"), args.text("origin"))


async def support_button(update: Update, context: BotContext, args: cb.Args) -> None:
    on = args.flag("on")
    change = await item_service.set_support(
        context.uow, context.resident.id, args.number("iid"), on
    )
    if change is None:
        await answer(update, context, label(context, "item_gone"), alert=True)
        return
    if change.banned:  # banned residents can read, but not support
        await answer(update, context, label(context, "banned_short"), alert=True)
        return
    if on:
        note = label(context, "supported_and_following" if change.followed else "supported")
    else:
        note = label(context, "support_withdrawn")
    # The note and the card go out at the same time (answer() marks the press answered
    # before its first await, so show() does not answer it again).
    await asyncio.gather(
        answer(update, context, note),
        show_item(update, context, args.number("iid"), args.text("origin")),
    )


async def follow_button(update: Update, context: BotContext, args: cb.Args) -> None:
    on = args.flag("on")
    change = await item_service.set_follow(context.uow, context.resident.id, args.number("iid"), on)
    if change is None:
        await answer(update, context, label(context, "item_gone"), alert=True)
        return
    await asyncio.gather(
        answer(update, context, label(context, "following" if on else "unfollowed")),
        show_item(update, context, args.number("iid"), args.text("origin")),
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(on_callback(cb.ITEMS_MENU, items_menu_button))
    app.add_handler(on_callback(cb.ITEMS, items_button))
    app.add_handler(on_callback(cb.ITEM, item_button))
    app.add_handler(on_callback(cb.SUPPORT, support_button))
    app.add_handler(on_callback(cb.FOLLOW, follow_button))
