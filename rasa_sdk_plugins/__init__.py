"""rasa-sdk's plugin package (it imports ``rasa_sdk_plugins`` from the working directory and
calls ``init_hooks``): adds the knowledge engine's doors (address, token, limits: see
``actions/doors.py``), start-up and routes to the action server."""

import sys

import pluggy

hookimpl = pluggy.HookimplMarker("rasa_sdk")


@hookimpl
def attach_sanic_app_extensions(app) -> None:
    from actions.server import attach

    attach(app)


def init_hooks(manager: pluggy.PluginManager) -> None:
    manager.register(sys.modules[__name__])
