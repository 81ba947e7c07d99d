"""twistd plugin: ``twistd -n presence --listen tcp:8080``.

Only assembles services; importing it must stay cheap, because twistd
imports every plugin to list them.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer

from presence.app.options import Options


@implementer(IServiceMaker, IPlugin)
class PresenceServiceMaker:
    tapname = "presence"
    description = "Presence server: WebSocket sessions, heartbeats and close records."
    options = Options

    def makeService(self, options):
        from twisted.internet import reactor

        from presence.app.workers import follow_parent, in_worker, make_workers

        if in_worker():
            follow_parent(reactor)
        elif options["workers"] > 1:
            # The parent of the workers: it supervises, and serves nothing.
            return make_workers(options, reactor)
        from presence.app.service import make_service
        from presence.web.admin import AdminApp
        from presence.web.api import PresenceAPI

        return make_service(options, PresenceAPI, admin_factory=AdminApp)


serviceMaker = PresenceServiceMaker()
