"""Klein web applications (the HTTP API and the admin dashboard).

They call the domain objects in :mod:`presence`; nothing in :mod:`presence`
imports this package.
"""
