"""moto's server, answering one request at a time.

moto's backends keep no locks, and its own `moto_server` serves each request on a thread, so
two concurrent conditional writes can both pass their check before either writes: a lost
update that real DynamoDB and S3 never allow. Serialized, each request is atomic as in AWS,
and the tests of callrec's compare-and-swap retries test callrec, not the emulator.

Usage: moto_serve.py HOST PORT
"""

import signal
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
