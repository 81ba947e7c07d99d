"""What every protocol shares, pure: the HTTP request head every connection
starts with, the JSON every session speaks, close codes and the record of how
a session ended, the events a protocol core hands its adapter, a message
prepared once for many sessions, and the client's address behind proxies.

Nothing here imports Twisted, Redis or any other layer of Presence
(docs/architecture.md).
"""
