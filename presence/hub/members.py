"""Who is in a channel, as an application shows it: accounts with their
ticket's ``info`` and their sessions (docs/messages.md, ``members``;
docs/api.md, ``GET /channels/CHANNEL/members``).

Everything comes from Redis in one script a page (presence/redis/scripts.py
``CHANNEL_MEMBERS``): the channel's accounts, each session's entry in its
account's hash (its node, its info) and in its node's session hash (the
connection's quality, presence/hub/quality.py). Sessions of one account are
grouped; an account whose last session left is still listed, without
sessions, while its leave waits for --leave-delay."""

import json

__all__ = ["Members", "MEMBERS_PAGE"]

#: Sessions one step of the walk over a channel's members reads.
MEMBERS_PAGE = 1000


def _decoded(entry):
    if not entry:
        return {}
    try:
        decoded = json.loads(entry)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


class Members:
    """``store``: the node's PresenceStore; ``quality``: how a session's
    node entry becomes its ``rtt_ms``, ``last_seen_ms`` and ``stale``
    (a callable, entry dict -> dict)."""

    def __init__(self, store, quality):
        self.store = store
        self.quality = quality

    def session_entry(self, session_id, entry, node_entry):
        """One session as a member listing shows it."""
        shown = {"session": session_id, "node": entry.get("node"),
                 "protocol": entry.get("protocol")}
        shown.update(self.quality(node_entry))
        return shown

    def group(self, rows):
        """``[(session, account, entry, node entry)]`` -> member entries,
        one per account, in order of account, sessions in order of id."""
        accounts = {}
        anonymous = []
        for session_id, account, entry, node_entry in sorted(rows):
            entry = _decoded(entry)
            if not session_id:
                # Its last session left, and its leave waits for the delay:
                # still a member (entry: its leave's event, with its info).
                member = accounts.setdefault(account, {"account": account, "info": None,
                                                       "sessions": []})
                if member["info"] is None:
                    member["info"] = entry.get("info")
                continue
            shown = self.session_entry(session_id, entry, _decoded(node_entry))
            if not account:
                anonymous.append({"account": None, "info": None, "sessions": [shown]})
                continue
            member = accounts.get(account)
            if member is None:
                member = accounts[account] = {"account": account, "info": None, "sessions": []}
            if entry.get("info") is not None:
                member["info"] = entry["info"]  # its sessions' last, by id
            member["sessions"].append(shown)
        return [accounts[account] for account in sorted(accounts)] + anonymous

    async def of_account(self, account):
        """``GET /presence/ACCOUNT``'s sessions: each session's entry (node,
        ip, protocol, since, info) with its connection's quality."""
        sessions = sorted((await self.store.account_sessions(account)).items())
        entries = [_decoded(entry) for _, entry in sessions]
        nodes = await self.store.session_entries(
            [(entry.get("node") or "", session_id)
             for (session_id, _), entry in zip(sessions, entries)], account)
        result = []
        for (session_id, _), entry, node_entry in zip(sessions, entries, nodes):
            shown = dict(entry, session=session_id)
            shown.update(self.quality(_decoded(node_entry)))
            result.append(shown)
        return result

    async def of_channel(self, channel):
        """Every member of ``channel``, as a client's ``members`` answers:
        its accounts (those whose leave waits for the delay too, without
        sessions), a walk of MEMBERS_PAGE accounts a step. Anonymous
        sessions are counted, not listed."""
        rows = []
        cursor = "0"
        while True:
            cursor, page = await self.store.channel_members_page(channel, cursor, MEMBERS_PAGE)
            rows.extend(page)
            if cursor == "0":
                break
        # HSCAN may return a session twice while the hash is rehashed.
        return self.group(set(rows))

    async def channels(self, cursor, count):
        """``GET /channels``: a page of the channels with members, with
        their counts; ``(channels, next cursor or None)``."""
        cursor, page = await self.store.channels_page(str(cursor), count)
        return ([{"channel": channel, "sessions": sessions, "accounts": accounts}
                 for channel, sessions, accounts in sorted(page)],
                None if cursor == "0" else int(cursor))

    async def counts(self, channel):
        """``GET /channels/CHANNEL``: its sessions and accounts, in O(1)."""
        sessions, accounts = await self.store.channel_counts(channel)
        return {"channel": channel, "sessions": sessions, "accounts": accounts}

    async def page_of_channel(self, channel, cursor, count):
        """``GET /channels/CHANNEL/members``: a page of about ``count``
        accounts (Redis's HSCAN may give a few more), each with its info
        and its sessions in the channel; ``(members, next cursor or
        None)``. Anonymous sessions are counted, not listed."""
        cursor, rows = await self.store.channel_members_page(channel, str(cursor), count)
        return self.group(set(rows)), None if cursor == "0" else int(cursor)
