"""The live web view of a cluster (``run_client.py --web``): the protocol seen, for a classroom.

    view      follows every replica: its protocol feed (long-polled) and its status
    controls  what the page may do to an embedded cluster (writes, crashes, failpoints)
    app       the Starlette application: the page, its live feed (server-sent events), its actions
    server    one run: the cluster (started here, or attached), the view, the controls, uvicorn
    cli       the command line: an embedded cluster or an attached one, the listening socket

The page itself (``static/``) is plain HTML, CSS and JavaScript, with no build step.
"""
