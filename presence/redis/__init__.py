"""Everything Presence asks of Redis: the connection and its bounds
(:mod:`.engine`), the names of every key and channel (:mod:`.keys`), the Lua
scripts that change several keys at once (:mod:`.scripts`), the presence
operations the hub performs (:mod:`.store`), the pub/sub connection
(:mod:`.subscriber`), how to reach Redis (:mod:`.connection`; its master
through Sentinel, :mod:`.sentinel`) and the ``redis-server`` started for a
node given no Redis (:mod:`.embedded`).

Nothing here imports the rest of Presence but ``presence.wire``; importing
this package imports none of its modules (the plugin's options read the key
prefix without loading txredisapi). docs/redis.md documents every key for
backend authors.
"""
