"""What the twistd plugin assembles: the options (:mod:`.options`), the
settings objects made of them (:mod:`.config`), the service tree of a
running node (:mod:`.service`), OAuth token introspection (:mod:`.oauth`)
and the demo (:mod:`.demo`).

The web applications are handed to the service by the plugin: nothing here
imports presence.web.
"""
