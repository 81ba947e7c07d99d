"""The Klein web applications: the HTTP API for backends (:mod:`.api`) and
the admin dashboard (:mod:`.admin`), with the browser client, the demo page
and the dashboard's templates and static files.

They call the layers below them (the hub, the client side, the app's demo
and OAuth); nothing outside this package imports it (the twistd plugin hands
these classes to the service: docs/architecture.md).
"""
